#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// What the wal-index header of a WAL database says, as every connection of every process sees it.
///
/// SQLite rewrites this header (in the `-shm` file, format documented at https://www.sqlite.org/walformat.html)
/// on every commit, and `iChange` goes up by exactly one per committed write transaction (SQLite's `walFrames`).
/// A WAL restart rewrites the header too (new salts, no frames) but leaves the counter alone: it changes no
/// content. So two equal counters mean that nobody committed in between, in this process or in another.
struct WALHeader: Sendable {
    /// `iChange`: committed write transactions, wrapping.
    var change: UInt32
}

/// Reads the wal-index header of a WAL database: one `pread` from its `-shm` file, no lock, no SQLite call. This
/// lets recall tell whether anything was committed since it last looked without a read transaction.
final class WALHeaderProbe: Sendable {
    private let descriptor: Int32

    /// Opens `path-shm`; `nil` when it cannot be read (no WAL mode, an in-memory database).
    init?(databasePath path: String) {
        let descriptor = open(path + "-shm", O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { return nil }
        self.descriptor = descriptor
        guard read() != nil else {
            close(descriptor)
            return nil
        }
    }

    deinit { close(descriptor) }

    /// The first copy of the header now; `nil` when the file holds no initialised header.
    func read() -> WALHeader? {
        // iVersion, unused, iChange, isInit + bigEndCksum + szPage: native byte order.
        var fields: (UInt32, UInt32, UInt32, UInt32) = (0, 0, 0, 0)
        let count = withUnsafeMutableBytes(of: &fields) { pread(descriptor, $0.baseAddress, $0.count, 0) }
        guard count == MemoryLayout.size(ofValue: fields) else { return nil }
        // iVersion is 3007000 in every SQLite since 3.7; isInit (the first byte after iChange) is 1 once written.
        let isInit = withUnsafeBytes(of: fields.3) { $0[0] }
        guard fields.0 == 3_007_000, isInit == 1 else { return nil }
        return WALHeader(change: fields.2)
    }
}

/// On SQLite, recall learns of other commits from the WAL index header: `iChange` is the commit counter.
extension WALHeaderProbe: CommitSignal {
    func commitCounter() -> UInt32? { read()?.change }
}
