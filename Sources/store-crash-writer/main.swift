// store-crash-writer: a victim process for the crash-safety test and a durability benchmark.
//
//   store-crash-writer DBPATH
//       Opens the store at DBPATH and records finished calls in a loop, forever. After
//       each call's final commit (recordEnded) has returned, prints the call's id and a
//       newline to stdout and flushes. A test SIGKILLs it at a random moment and then
//       checks that every printed id is in the database.
//
//   store-crash-writer --bench DBDIR [COUNT]
//       Measures commits per second of recordCallStarted+recordEnded with
//       synchronous=NORMAL and =FULL (WAL mode both), COUNT calls each (default 300),
//       in fresh databases under DBDIR, and prints the figures.
import Foundation
import Store

#if canImport(Glibc)
import Glibc
#endif

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data((message + "\n").utf8))
    exit(2)
}

func emit(_ line: String) {
    // Unbuffered write(2): when it returns, the bytes are in the pipe, whatever happens next.
    var bytes = Array((line + "\n").utf8)
    var offset = 0
    while offset < bytes.count {
        let n = bytes.withUnsafeMutableBytes { buf in
            write(STDOUT_FILENO, buf.baseAddress! + offset, buf.count - offset)
        }
        if n < 0 {
            if errno == EINTR { continue }
            exit(3)  // reader went away
        }
        offset += n
    }
}

func crashLoop(path: String) throws -> Never {
    let store = try BeeldzorgStore(path: path)
    if let fault = store.openFault {
        FileHandle.standardError.write(Data("open fault: \(fault)\n".utf8))
    }
    let posts = ["sip:post1@centrale.example", "sip:post2@centrale.example"]
    while true {
        let id = RandomIdentifier.string()
        let now = Date()
        try store.recordCallStarted(
            id: id, direction: .outgoing, peerURI: posts[0], peerName: "Centrale", at: now)
        try store.recordEnded(
            id: id, outcome: .answered, postsTried: posts, failureReason: nil, at: now)
        emit(id)
    }
}

func bench(directory: String, count: Int) throws {
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    print("calls: \(count) (each = 2 commits: recordCallStarted + recordEnded with outbox row)")
    for durability in [StoreDurability.normal, .full] {
        let path = directory + "/bench-\(durability.rawValue)-\(RandomIdentifier.string()).sqlite"
        let store = try BeeldzorgStore(path: path, options: StoreOptions(durability: durability))
        let clock = ContinuousClock()
        let start = clock.now
        for i in 0..<count {
            let id = "bench-\(i)"
            try store.recordCallStarted(
                id: id, direction: .incoming, peerURI: "sip:a@h", peerName: nil, at: Date())
            try store.recordEnded(id: id, outcome: .answered, failureReason: nil, at: Date())
        }
        let elapsed = start.duration(to: clock.now)
        let seconds = Double(elapsed.components.seconds)
            + Double(elapsed.components.attoseconds) / 1e18
        let commits = Double(count * 2)
        print(
            String(
                format: "synchronous=%@: %.0f commits/s, %.2f ms/commit (%.2f s total)",
                durability.rawValue.uppercased(), commits / seconds, seconds * 1000 / commits,
                seconds))
        try store.close()
        for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) }
    }
}

let args = CommandLine.arguments
do {
    if args.count >= 3, args[1] == "--bench" {
        try bench(directory: args[2], count: args.count > 3 ? Int(args[3]) ?? 300 : 300)
    } else if args.count == 2, !args[1].hasPrefix("-") {
        try crashLoop(path: args[1])
    } else {
        fail("usage: store-crash-writer DBPATH | store-crash-writer --bench DBDIR [COUNT]")
    }
} catch {
    fail("store-crash-writer: \(error)")
}
