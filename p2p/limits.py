"""Every limit and default of p2p, in one place, each with its reason.

Pure constants: no I/O. Other modules import from here instead of writing
numbers of their own, so a reader can audit the resource bounds at a glance.
"""

KiB = 1024
MiB = 1024 * KiB

# --- network defaults (the Go prototype's ports) ---------------------------
DEFAULT_TCP_PORT = 9998          # peer channels
DEFAULT_UDP_PORT = 9999          # discovery announces
DISCOVERY_INTERVAL = 5.0         # seconds between announces: the prototype's 5 s
PEER_EXPIRY = 3 * DISCOVERY_INTERVAL + 1  # forget a discovered peer after 3 missed announces
MAX_DISCOVERED = 1024            # peers heard of by discovery but never connected: more than a LAN holds;
                                 # a forger's flood of announces stops here (each entry costs ~1 KiB)
MAX_DISCOVERED_PER_HOST = 16     # of those, announced from one host: several peers may share a host (containers,
                                 # tests on 127.0.0.1), thousands never do
DIALS_PER_HOST = 8               # dial attempts to the peers one host announced, per DIAL_WINDOW: a host naming
                                 # thousands of device ids and ports gets only these
DIAL_WINDOW = DISCOVERY_INTERVAL  # the window of DIALS_PER_HOST: one announce period

# --- framing ---------------------------------------------------------------
MAX_FRAME = 16 * MiB             # largest frame accepted; checked before allocation
HANDSHAKE_MAX_FRAME = 4 * KiB    # before authentication: a stranger makes us buffer next to nothing
RECV_CHUNK = 16 * KiB            # per-channel read buffer for small frames (large ones are read straight
                                 # into their own payload buffer): small, as a peer may hold hundreds

# --- content blocks --------------------------------------------------------
WHOLE_FILE_BLOCK = 256 * KiB     # a file this small is one block: cutting it would multiply the per-block
                                 # costs of a source tree's files for edits that move under 256 KiB anyway
CHUNK_AVG = 16 * KiB             # FastCDC average of files up to CHUNK_AVG * CHUNKS_PER_FILE (mean chunk ~20 KiB):
                                 # 1,000 SQLite UPDATEs on 117 MB move 22 MB (64 KiB: 62 MB); docs/EVENTS.md
CHUNKS_PER_FILE = 8192           # a larger file gets a larger average (a tier), so its event lists at most
                                 # about this many blocks (~600 KB of JSON) and per-block costs stay bounded
CHUNK_TIER_GROWTH = 64           # ... 64x larger (1 MiB for files of 128 MiB to 8 GiB): per-block costs, not
                                 # dedupe, decide there (a 500 MB file in 64 KiB blocks took 1.6x as long)
CHUNK_AVG_MAX = 2 * MiB          # the largest tier's average (files over 8 GiB); its maximum is MAX_BLOCK
MAX_BLOCK = 8 * MiB              # largest block; keeps a block frame well under MAX_FRAME
SMALL_BLOCK = 256 * KiB          # requests/answers this small have their own budget and queue: a
                                 # small file never waits behind a large one
ARCHIVE_LATER_MIN = 8 * MiB      # larger files reach the block store just after syncing, not on
                                 # the critical path (p2p/folder/archive.py); received, their blocks land
                                 # in bulk threads, hashed into the whole file and sent to disk as they land
ARCHIVE_QUIET = 0.5              # s without a block fetched or served before archiving goes on: on two
                                 # cores, archiving beside a transfer slows the transfer
ARCHIVE_SLICE = 8 * MiB          # archived between two checks of that quiet: a transfer that starts
                                 # meanwhile waits for one slice (a few ms of disk) at most
RESUME_MIN = ARCHIVE_LATER_MIN   # larger files keep their partial download across interruptions (smaller
                                 # ones keep their received blocks in the store, so they resume anyway)
PARALLEL_HASH_MIN = ARCHIVE_LATER_MIN  # larger files are read, cut and hashed (whole and blocks) on three
                                 # threads at once (p2p/blocks/chunking.py): the sender's scan is on the clock
PIPELINE_SEGMENT = 8 * MiB       # ... a segment at a time (twice the tier's largest block if more): one hand-off
                                 # to each hashing thread per segment, not per block
PIPELINE_IN_FLIGHT = 2           # ... segments in flight: one hashed (both hashes at once) while the next is read
                                 # and cut; one buffer more than this in memory (3 x 12 MiB in the 1 MiB tier)
VERIFY_CHUNK = 1 * MiB           # the whole-file check before a rename reads this much at a time (what
                                 # was not hashed as the blocks landed: p2p/folder/running_hash.py)
PACKED_BLOCK_MAX = SMALL_BLOCK    # blocks this small are appended to a pack file (p2p/blocks/store.py), not
                                 # one file each: a small file's history costs no file creation
PACK_MAX_BYTES = 64 * MiB        # a pack is closed and a new one started past this: repacking one copies at most this
PACK_WRITE_BYTES = 1 * MiB       # a scanned file's (or scan job's files') small blocks are packed this much at a time:
                                 # one write (and one index query) each, and little memory held per scanning thread
INDEX_COMMIT_ROWS = 4096         # the pack index (blocks.db) commits this many changes at once ... (its keys are
                                 # random hashes, spread over every page: a commit writes most pages it holds, so
                                 # fewer, larger commits write fewer pages per row; 512 cost 12% more CPU per block)
INDEX_CACHE_KIB = 16 * 1024      # the pack index's page cache: the index of 100,000 blocks (~6 MiB) stays in memory
                                 # (SQLite's default 2 MiB made each insert read a random page: 25% more CPU per block)
INDEX_COMMIT_INTERVAL = 0.2      # ... or this often (s): one commit per small file cost more than the file
INDEX_CHECKPOINT_ROWS = 4096     # ... and merges its WAL into the database after this many (a write and an fsync,
                                 # off the lock): the WAL stays a few MiB
REPACK_BELOW = 0.5               # prune rewrites a pack whose live bytes fall under this fraction of it: the
                                 # store's disk use stays under twice its live bytes (plus the open pack)

KEEP_OLD_MIN = 1024 * MiB       # by default old versions may take as much room as the folder, and at least this
                                 # (p2p/history/retention.py): a small folder keeps a useful history too
PRUNE_CHECK_INTERVAL = 1.0       # s between checks of the store's size against its bound (a running total: O(1));
                                 # the O(folder) prune runs only when the store grew past it, or hourly with --keep-days
BULK_THREADS = 3                 # threads for large-buffer work (hashing, landing and sealing big blocks)

FSYNC_THREADS = 8                # a batch of small files is written and fsynced on this many pool threads at
                                 # once (of gevent's 10): concurrent fsyncs share journal commits (200 files:
                                 # ~80-300 ms, against 0.6-1.5 s one after the other, and 0.1-0.7 s for a syncfs,
                                 # which also waits for whatever else the disk has to write)

# --- per-peer bounds -------------------------------------------------------
MAX_EVENTS_PER_BATCH = 1000      # events in one EVENTS frame (well under MAX_FRAME) ...
EVENTS_BATCH_BYTES = 4 * MiB     # ... and their JSON bytes at most: a file's event lists up to ~8,000 blocks
                                 # (~600 KB), so 1,000 events could exceed MAX_FRAME
MAX_REQUESTS_PER_PEER = 32       # outstanding block requests we send to one peer
MAX_BLOCKS_PER_FRAME = 32        # small blocks asked (BlockRequests) or sent (BlocksData) in one frame: all a peer's
                                 # outstanding small requests; 32 x SMALL_BLOCK stays well under MAX_FRAME
BATCH_BYTES = 1 * MiB             # ... and about this many bytes asked in one frame: tiny blocks share frames, blocks
                                 # of 128 KiB go 8 a frame (their frame cost is amortised already; less memory per frame)
MAX_SERVING_PER_PEER = 32        # block requests we serve concurrently for one peer
MAX_BYTES_IN_FLIGHT = 64 * MiB   # requested-but-unreceived block bytes per peer
MAX_BYTES_LANDING = 64 * MiB     # blocks written in bulk threads, asked for and not yet written, over every peer and
                                 # file: a peer's budget ends at a block's arrival, and blocks that arrive faster
                                 # than the disk takes them would otherwise wait in memory, up to a whole file;
                                 # as deep as one peer's pipeline (MAX_BYTES_IN_FLIGHT)
MAX_PENDING_EVENTS = 100_000     # events held while waiting for their causal parents
MAX_PENDING_BYTES = 64 * MiB     # ... and their serialized bytes: 100,000 usual events fit, 100,000 of 25 KiB
                                 # (2.4 GiB) do not
MAX_INVALID_EVENTS = 100         # invalid events from one session within INVALID_WINDOW before it is dropped:
INVALID_WINDOW = 60.0            # an honest peer sends none, a broken or hostile one is not heard forever
REJECT_LOG_INTERVAL = 10.0       # one log line per session and kind of rejected event this often (with a count)
MAX_REJECT_KINDS = 16            # kinds of rejection told apart per session; more share one line
SEND_QUEUE_FRAMES = 4096         # frames queued for one peer before it is resynced

# --- timeouts --------------------------------------------------------------
HANDSHAKE_TIMEOUT = 10.0         # a connection must authenticate within this
PING_INTERVAL = 10.0             # keepalive when a channel is otherwise quiet
IDLE_TIMEOUT = 35.0              # no frame at all for this long: drop the channel
RECONNECT_MIN = 0.5              # first reconnect delay; doubles per failure
RECONNECT_MAX = 30.0             # reconnect delay cap

# --- connections -----------------------------------------------------------
MAX_CONNECTIONS = 256            # total inbound connections (authenticated or not)
MAX_CONNECTIONS_PER_ADDRESS = 8  # inbound connections from one IP address

# --- local changes ---------------------------------------------------------
COALESCE_DELAY = 0.03            # quiet time before a changed path is scanned: one scan for a burst of writes
COALESCE_MAX_DELAY = 2.0         # a path written continuously is scanned at least this often
RESCAN_INTERVAL = 3600.0         # default seconds between full rescans: the last safety net for changes
                                 # the watcher missed, rare enough that its cost (a stat per path) is noise
RECORD_EVERY = 256               # a long scan records (and sends) its changes this many at a time ...
RECORD_INTERVAL = 0.05           # ... or this often (s), so the receivers start while it goes on
SCAN_CHUNK = 64                  # paths a scan observes per thread-pool job, their entries read in one
                                 # query: a job and a lookup per path cost more than the path's lstat
ACTIVITY_LINES = 20              # local changes said one per line in a second; the rest of that second's
ACTIVITY_WINDOW = 1.0            # are counted in one line (a first scan of 100,000 files printed 100,000
                                 # lines: 0.8 s of CPU per 30,000, and nothing anyone reads; p2p log has them)
SCAN_THREADS = 2                 # scan jobs at once (of the pool's 10 threads), whose results wait in order
                                 # for the hub: the scan never runs far ahead of the recording (each change
                                 # held is memory), and each thread's system calls hand the GIL back and forth
                                 # with the others' and the hub's: a first scan of 30,000 files on this 2-core
                                 # VM took 11.4 s (13.4 s CPU) with 10, 10.9 (11.7) with 4, 8.6-9.1 (8.6-8.9)
                                 # with 2, 8.8 (7.9) with 1; 2 keeps a second read in flight on a cold disk
MAX_UNSYNCED = 10_000            # paths listed as "not synced" (more are counted): bounded memory
UNSYNCED_RETRY_MIN = 2.0         # first retry of a path that could not be synced; doubles per failure
STATE_RANGE_ROWS = 4             # a local-state read of n paths first reads one key range of at most
                                 # 4n rows (a sorted chunk of the scan: n), then looks up the rest
IN_CHUNK = 500                   # keys per SQLite "IN (...)" statement: under its bound on parameters
                                 # (999 before SQLite 3.32)
RECONCILE_CHUNK = 1000           # paths whose winning versions are read at a time: 200,000 dirty paths at
                                 # start hold 1,000 events in memory, not all of them
UNSYNCED_RETRY_MAX = 300.0       # retry cap: a FIFO in the way costs one attempt per 5 minutes

MAX_IGNORE_BYTES = 1 * MiB       # a larger .p2pignore is not used: it is read in the hub, and no real one is this big
STATUS_LACK_EVENTS = 10_000     # `p2p status` reads at most this many events a peer lacks to say which files
                                 # (beyond: it says how many changes): a status call stays cheap
HAVE_INTERVAL = 1.0              # seconds between two Have messages on one channel, at least: what a peer
                                 # lacks is at most this stale while changes flow
HAVE_RATE = 10.0                 # Have messages a peer sends per second in all, at most: in a mesh of N the
                                 # interval grows to N/10 s, so their bytes per change stay O(N), not O(N^2)
HAVE_UNKNOWN_ORIGINS = 1024      # origins a peer's Have may name that our history does not hold (yet):
                                 # more are dropped, so a hostile peer cannot grow our memory
STATUS_LIST_MAX = 100            # transfers listed by `p2p status --json` (the total line counts them all)

FOLDER_CHECK_INTERVAL = 2.0      # while the folder (or its marker) is missing: look again this often

# --- supervision -----------------------------------------------------------
RESTART_DELAY = 1.0              # a crashed component restarts after this: a bug in a loop never spins
MAX_RESTARTS = 5                 # this many crashes of one component ...
RESTART_WINDOW = 60.0            # ... within this many seconds: stop the peer (exit 1) and say why

# --- history ---------------------------------------------------------------
FSYNC_INTERVAL = 0.2             # group commit: events.jsonl is fsynced at most this often
INDEX_OFFSETS_CHUNK = 1024       # event offsets per blob in .p2p/index.db: a batch rewrites at most 8 KiB
                                 # per origin, and a start loads 1M offsets in ~1,000 rows
HEADS_CACHE = 16_384             # paths whose heads the history's index keeps in memory (~200 bytes each):
                                 # a file being received is looked up ~6 times, one query instead of six
INDEX_REPLAY_FLUSH = 262_144     # changed paths a replay (a rebuild) holds before writing them to the index
                                 # (~250 bytes each): 200,000 paths are rebuilt with no lookup in between
SEQ_RESERVE = 1000               # own seqs reserved per fsync of .p2p/seq.mark: one small fsync per 1000
                                 # local events, and a lost log is noticed unless it lost fewer than this
                                 # after a crash (p2p/history/seqmark.py)

# --- disk faults -------------------------------------------------------------
DISK_PROBE_INTERVAL = 5.0        # s between probes of a home disk that refused a history write: a change
                                 # made meanwhile is recorded at most this long after space returns
DISK_PROBE_BYTES = 64 * KiB      # the probe writes this much: room for a batch of events, not just one line
MAX_DEFERRED_PATHS = 10_000      # paths remembered while the history cannot be written; beyond, one full
                                 # rescan at recovery instead (bounded memory)

# --- the local dashboard (p2p/gui) --------------------------------------------
DEFAULT_GUI_PORT = 9996          # beside the peer ports (9998, 9999; 9997 is the README's ssh -L example); loopback
GUI_FEED_KEPT = 1000             # live updates kept for /rest/events?since=N: a page further behind reloads all
GUI_LONG_POLL = 25.0             # s a /rest/events request waits for news: under the idle cut of browsers and proxies
GUI_TIMELINE_DEFAULT = 200       # events a timeline request returns unless it asks for another number
GUI_TIMELINE_MAX = 5000          # ... and at most this many: one answer stays small, older ones are paged
GUI_STORE_SIZE_EVERY = 30.0      # s between walks of the block store for its size (O(blocks)): never per request
GUI_RATE_WINDOW = 1.0            # s: transfer rates are measured over at least this, so two close polls agree
GUI_MAX_BODY = 64 * KiB          # largest request body the dashboard reads (a restore or pause request is tiny)
