import Crypto
import EaselImages
import EaselIntegrations
import Foundation
import ServiceLifecycle

/// The offline provider (`EASEL_PROVIDER=demo`, the default without a provider key): draws a
/// picture determined by the prompt and options, at the size asked for, after a simulated
/// latency with progress along the way. Pictures are labelled "demo" in the UI.
public struct DemoImageProvider: Sendable {
    public var latency: Duration
    private let images: ImageLibrary

    public init(latency: Duration, images: ImageLibrary) {
        self.latency = latency
        self.images = images
    }

    /// `progress` hears 0–100 as the simulated work goes on.
    public func generate(_ request: ProviderGenerationRequest, progress: @Sendable (Int) async -> Void) async throws(ProviderError) -> [ProviderImage] {
        let steps = 5
        if self.latency > .zero {
            for step in 1...steps {
                do {
                    // Pretend work need not hold up a shutdown: the task is simply resumed at the next start.
                    try await cancelWhenGracefulShutdown { try await Task.sleep(for: self.latency / steps) }
                } catch {
                    throw ProviderError(.unavailable, "the demo generation was interrupted")
                }
                await progress(step * 90 / steps)
            }
        }
        let (width, height) = PriceTable.dimensions(of: request.size) ?? (1024, 1024)
        let format = ImageFormat(rawValue: request.outputFormat ?? "png") ?? .png
        var results: [ProviderImage] = []
        for index in 0..<request.count {
            let seed = Self.seed(request, index: index)
            do {
                let data = try await BlockingWork.run { [images] in
                    try images.encode(rgb: Self.draw(width: width, height: height, seed: seed), width: width, height: height, as: format)
                }
                results.append(ProviderImage(data: data, format: format.rawValue))
            } catch {
                throw ProviderError(.failed, "the demo provider could not encode its picture: \(error)")
            }
        }
        return results
    }

    static func seed(_ request: ProviderGenerationRequest, index: Int) -> [UInt8] {
        let text = [request.prompt, request.model, request.size, request.quality, String(index), String(request.references.count)].joined(separator: "\u{1F}")
        return Array(SHA256.hash(data: Data(text.utf8)))
    }

    /// A diagonal gradient between two colours with a few soft discs on top: cheap to draw,
    /// different for every prompt, the same every time for the same one.
    static func draw(width: Int, height: Int, seed: [UInt8]) -> [UInt8] {
        func colour(_ offset: Int) -> (Int, Int, Int) { (Int(seed[offset]), Int(seed[offset + 1]), Int(seed[offset + 2])) }
        let from = colour(0)
        let to = colour(3)
        struct Disc { var x: Int; var y: Int; var radius2: Int; var colour: (Int, Int, Int) }
        let discs = (0..<4).map { i -> Disc in
            let base = 6 + i * 6
            let radius = max(width, height) * (8 + Int(seed[base + 2]) % 20) / 100
            return Disc(
                x: Int(seed[base]) * width / 255, y: Int(seed[base + 1]) * height / 255, radius2: radius * radius,
                colour: (Int(seed[base + 3]), Int(seed[base + 4]), Int(seed[base + 5]))
            )
        }
        var pixels = [UInt8](repeating: 0, count: width * height * 3)
        let span = max(width + height - 2, 1)
        pixels.withUnsafeMutableBufferPointer { buffer in
            for y in 0..<height {
                for x in 0..<width {
                    let t = (x + y) * 256 / span
                    var r = (from.0 * (256 - t) + to.0 * t) >> 8
                    var g = (from.1 * (256 - t) + to.1 * t) >> 8
                    var b = (from.2 * (256 - t) + to.2 * t) >> 8
                    for disc in discs {
                        let dx = x - disc.x
                        let dy = y - disc.y
                        if dx * dx + dy * dy <= disc.radius2 {
                            r = (r + disc.colour.0) >> 1
                            g = (g + disc.colour.1) >> 1
                            b = (b + disc.colour.2) >> 1
                        }
                    }
                    let offset = (y * width + x) * 3
                    buffer[offset] = UInt8(r)
                    buffer[offset + 1] = UInt8(g)
                    buffer[offset + 2] = UInt8(b)
                }
            }
        }
        return pixels
    }
}

/// Runs CPU-heavy synchronous work (image decoding, encoding, drawing) off Swift's cooperative
/// threads, so a few big images do not stall every request on a two-core machine.
enum BlockingWork {
    private static let queue = DispatchQueue(label: "easel.image-work", qos: .userInitiated, attributes: .concurrent)

    static func run<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            Self.queue.async {
                continuation.resume(with: Result { try work() })
            }
        }
    }
}
