import EaselBlobs
import EaselTestSupport
import Foundation
import NIOCore
import Testing

@Suite("Disk reads stream on demand")
struct DiskReadStreamTests {
    @Test("A chunk is read from the file only when the consumer asks: nothing piles up ahead of a slow consumer")
    func readsOnDemand() async throws {
        let folder = try TemporaryDirectory("easel-read")
        defer { folder.remove() }
        let file = folder.url.appending(path: "big.bin")
        let chunk = DiskBlobStore.readChunkSize
        try Data(repeating: 7, count: chunk * 4).write(to: file)

        let stream = try DiskBlobStore.readStream(file, range: nil)
        var iterator = stream.makeAsyncIterator()
        let first = try #require(try await iterator.next())
        #expect(first.readableBytes == chunk)
        // Give a reader that reads ahead every chance to do so, then cut the file short: a
        // reader that waits to be asked sees the cut, one that read ahead does not.
        for _ in 0..<50 { await Task.yield() }
        let handle = try FileHandle(forWritingTo: file)
        try handle.truncate(atOffset: UInt64(chunk + 10))
        try handle.close()
        var rest = 0
        while let next = try await iterator.next() { rest += next.readableBytes }
        #expect(rest == 10, "only what the file holds when asked is read")
    }

    @Test("A range is read in chunks and ends where it says")
    func rangedRead() async throws {
        let folder = try TemporaryDirectory("easel-read")
        defer { folder.remove() }
        let file = folder.url.appending(path: "range.bin")
        let bytes = (0..<(DiskBlobStore.readChunkSize * 2 + 100)).map { UInt8(truncatingIfNeeded: $0 * 31) }
        try Data(bytes).write(to: file)
        let range = 1000...(DiskBlobStore.readChunkSize + 5000)
        var collected: [UInt8] = []
        var largest = 0
        for try await chunk in try DiskBlobStore.readStream(file, range: range) {
            largest = max(largest, chunk.readableBytes)
            collected += chunk.readableBytesView
        }
        #expect(collected == Array(bytes[range]))
        #expect(largest <= DiskBlobStore.readChunkSize)
    }
}
