// The few POSIX pieces the device threads share: the monotonic clock the kernel stamps input
// events with, poll with a deadline, a self-pipe to wake a blocked thread, and an inotify
// watcher for device nodes that come and go.

import Glibc
import Synchronization

enum Posix {
    static func errorString(_ code: Int32) -> String {
        String(cString: strerror(code))
    }

    /// CLOCK_MONOTONIC, the clock input events are stamped with once the device is told so.
    static func monotonicNow() -> Duration {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return .seconds(ts.tv_sec) + .nanoseconds(ts.tv_nsec)
    }

    /// Milliseconds for poll(2) until `deadline` (rounded up so we never wake early), or -1.
    static func pollTimeout(until deadline: Duration?, now: Duration) -> Int32 {
        guard let deadline else { return -1 }
        if deadline <= now { return 0 }
        let (seconds, attos) = (deadline - now).components
        let ms = seconds * 1000 + (attos + 999_999_999_999_999) / 1_000_000_000_000_000
        return Int32(clamping: ms)
    }

    /// Waits until one of `fds` is readable (or hung up), the timeout passes, or a signal
    /// interrupts; returns which descriptors have something to say.
    static func poll(_ fds: [Int32], timeoutMilliseconds: Int32) -> [Bool] {
        var pfds = fds.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
        let rc = pfds.withUnsafeMutableBufferPointer { buf in
            Glibc.poll(buf.baseAddress, nfds_t(buf.count), timeoutMilliseconds)
        }
        if rc <= 0 { return fds.map { _ in false } }
        return pfds.map { $0.revents != 0 }
    }
}

/// A self-pipe: `signal()` from any thread makes the read end readable, which wakes a
/// device thread blocked in poll so it can see its stop flag.
final class Wakeup: Sendable {
    let readFD: Int32
    private let writeFD: Int32

    init() {
        var fds: [Int32] = [-1, -1]
        let rc = fds.withUnsafeMutableBufferPointer { pipe($0.baseAddress) }
        precondition(rc == 0, "pipe failed: \(Posix.errorString(errno))")
        for fd in fds {
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        }
        readFD = fds[0]
        writeFD = fds[1]
    }

    func signal() {
        var byte: UInt8 = 1
        _ = write(writeFD, &byte, 1)
    }

    func drain() {
        var buf = [UInt8](repeating: 0, count: 64)
        while buf.withUnsafeMutableBytes({ read(readFD, $0.baseAddress, $0.count) }) > 0 {}
    }

    deinit {
        Glibc.close(readFD)
        Glibc.close(writeFD)
    }
}

/// Watches directories for entries appearing or changing (IN_CREATE, IN_ATTRIB, IN_MOVED_TO)
/// so a device thread can retry opening a vanished device the moment udev recreates it,
/// instead of polling the file system. A directory that does not exist yet (say
/// /dev/beeldzorg before udev made it) is watched through its parent until it appears.
final class DirectoryWatcher {
    let fd: Int32
    private let directories: [String]

    init?(directories: [String]) {
        let fd = inotify_init1(Int32(IN_NONBLOCK | IN_CLOEXEC))
        guard fd >= 0 else { return nil }
        self.fd = fd
        self.directories = directories
        refresh()
    }

    /// (Re)adds watches; adding one that exists is harmless, so this runs after every change.
    func refresh() {
        let mask = UInt32(IN_CREATE | IN_ATTRIB | IN_MOVED_TO | IN_DELETE_SELF)
        for dir in directories {
            if inotify_add_watch(fd, dir, mask) < 0 {
                let parent = dir.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/")
                _ = inotify_add_watch(fd, parent.isEmpty ? "/" : parent, mask)
            }
        }
    }

    /// Empties the event queue; true if anything happened.
    @discardableResult
    func drain() -> Bool {
        var any = false
        var buf = [UInt8](repeating: 0, count: 4096)
        while buf.withUnsafeMutableBytes({ read(fd, $0.baseAddress, $0.count) }) > 0 { any = true }
        if any { refresh() }
        return any
    }

    deinit { Glibc.close(fd) }
}

/// A thread that runs one blocking device loop; `stop()` asks it to finish and waits.
final class DeviceThread: Sendable {
    private let stopRequested = Atomic<Bool>(false)
    private let started = Atomic<Bool>(false)
    private let finished = Mutex<Bool>(false)
    let wakeup = Wakeup()

    var isStopping: Bool { stopRequested.load(ordering: .acquiring) }

    /// Starts `body` on a new detached thread; `body` should return soon after `isStopping`.
    func start(_ body: @escaping @Sendable () -> Void) {
        started.store(true, ordering: .releasing)
        Self.detach { [self] in
            body()
            finished.withLock { $0 = true }
        }
    }

    /// Runs `body` on a new detached thread (blocking device I/O stays off the
    /// concurrency pool's few threads).
    static func detach(_ body: @escaping @Sendable () -> Void) {
        let box = Unmanaged.passRetained(ThreadBody(body))
        var thread = pthread_t()
        let rc = pthread_create(&thread, nil, { arg in
            let body = Unmanaged<ThreadBody>.fromOpaque(arg!).takeRetainedValue()
            body.run()
            return nil
        }, box.toOpaque())
        precondition(rc == 0, "pthread_create failed: \(Posix.errorString(rc))")
        pthread_detach(thread)
    }

    /// Asks the loop to stop and waits (up to `timeout`) for it to finish.
    func stop(timeout: Duration = .seconds(2)) {
        stopRequested.store(true, ordering: .releasing)
        guard started.load(ordering: .acquiring) else { return }
        wakeup.signal()
        let deadline = Posix.monotonicNow() + timeout
        while !finished.withLock({ $0 }) && Posix.monotonicNow() < deadline {
            usleep(1000)
        }
    }
}

private final class ThreadBody {
    let run: () -> Void
    init(_ run: @escaping () -> Void) { self.run = run }
}
