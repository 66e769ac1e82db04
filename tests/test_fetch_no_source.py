"""A version no connected peer can give: the fetcher creates nothing for it
(no temporary file, no parent directory in the watched folder, whose
creation the watcher then reports back: a history of 200,000 files nobody
has kept a restarted peer busy doing that), lists it as waiting for a peer
and looks at it again later; one whose blocks are all here is still written."""

from types import SimpleNamespace

import gevent
import pytest

from p2p.folder.unsynced import Unsynced
from p2p.net.fetcher import WAITING, FileJob, Fetcher


class Writer:
    def __init__(self):
        self.begun = []

    def begin_file(self, path, event, resume_as=None):
        self.begun.append(path)
        raise gevent.GreenletExit   # (the test only asks whether it was reached)


def _fetcher(sessions, stored):
    later = []
    reconciler = SimpleNamespace(still_wanted=lambda path, event: True, fetch_finished=lambda job: None,
                                 look_again_at=lambda at, path: later.append(path))
    fetcher = Fetcher(root=None, state={}, store=SimpleNamespace(has=lambda h: h in stored), archive=set(),
                      writer=Writer(), partials=None, unsynced=Unsynced(), bulkpool=None,
                      registry=SimpleNamespace(sessions=lambda: sessions))
    fetcher.reconciler = reconciler
    return fetcher, later


EVENT = SimpleNamespace(id="A:1", size=5000, blocks=(("ab" * 32, 5000),))


def test_with_no_peer_connected_nothing_is_created_and_the_path_waits():
    fetcher, later = _fetcher(sessions=[], stored=set())
    fetcher._run(FileJob("deep/dir/f.txt", EVENT))
    assert fetcher.writer.begun == []
    assert "deep/dir/f.txt" in fetcher.unavailable and later == ["deep/dir/f.txt"]
    assert fetcher.unsynced.get("deep/dir/f.txt").reason == WAITING


@pytest.mark.parametrize("sessions, stored", [
    ([SimpleNamespace(closed=SimpleNamespace(is_set=lambda: False))], set()),   # a peer to ask
    ([], {"ab" * 32}),                                                          # every block here
])
def test_with_a_source_the_file_is_begun(sessions, stored):
    fetcher, _ = _fetcher(sessions, stored)
    with pytest.raises(gevent.GreenletExit):
        fetcher._run(FileJob("f.txt", EVENT))
    assert fetcher.writer.begun == ["f.txt"]
