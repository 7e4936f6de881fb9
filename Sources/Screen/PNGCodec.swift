// PNG through libpng's simplified API: the only file that imports CPNG.

private import CPNG
import Foundation

public struct PNGError: Error, Sendable, CustomStringConvertible {
    public var detail: String
    public var description: String { "PNG: \(detail)" }
}

/// Screenshots and reference images as 8-bit RGB PNG (the X byte of XRGB is dropped).
public enum PNGCodec {
    public static func encode(_ image: ScreenImage) throws(PNGError) -> [UInt8] {
        var rgb = [UInt8](repeating: 0, count: image.width * image.height * 3)
        for (i, pixel) in image.pixels.enumerated() {
            rgb[3 * i] = UInt8((pixel >> 16) & 0xFF)
            rgb[3 * i + 1] = UInt8((pixel >> 8) & 0xFF)
            rgb[3 * i + 2] = UInt8(pixel & 0xFF)
        }
        var png = png_image()
        png.version = cpng_version()
        png.width = png_uint_32(image.width)
        png.height = png_uint_32(image.height)
        png.format = cpng_format_rgb()
        // First call sizes the output, second writes it.
        var size: Int = 0
        guard png_image_write_to_memory(&png, nil, &size, 0, rgb, 0, nil) != 0 else {
            throw PNGError(detail: message(&png))
        }
        var out = [UInt8](repeating: 0, count: size)
        let ok = out.withUnsafeMutableBytes { buffer in
            png_image_write_to_memory(&png, buffer.baseAddress, &size, 0, rgb, 0, nil)
        }
        guard ok != 0 else { throw PNGError(detail: message(&png)) }
        return Array(out.prefix(size))
    }

    public static func decode(_ bytes: [UInt8]) throws(PNGError) -> ScreenImage {
        var png = png_image()
        png.version = cpng_version()
        guard png_image_begin_read_from_memory(&png, bytes, bytes.count) != 0 else {
            throw PNGError(detail: message(&png))
        }
        png.format = cpng_format_rgb()
        let width = Int(png.width), height = Int(png.height)
        guard width > 0, height > 0, width <= 8192, height <= 8192 else {
            png_image_free(&png)
            throw PNGError(detail: "unreasonable size \(width)×\(height)")
        }
        var rgb = [UInt8](repeating: 0, count: Int(cpng_image_size(&png)))
        let ok = rgb.withUnsafeMutableBytes { png_image_finish_read(&png, nil, $0.baseAddress, 0, nil) }
        guard ok != 0 else { throw PNGError(detail: message(&png)) }
        var pixels = [UInt32](repeating: 0, count: width * height)
        for i in 0..<(width * height) {
            pixels[i] = (UInt32(rgb[3 * i]) << 16) | (UInt32(rgb[3 * i + 1]) << 8) | UInt32(rgb[3 * i + 2])
        }
        return ScreenImage(width: width, height: height, pixels: pixels)
    }

    public static func write(_ image: ScreenImage, to path: String) throws {
        try Data(encode(image)).write(to: URL(fileURLWithPath: path), options: .atomic)
    }

    public static func read(_ path: String) throws -> ScreenImage {
        try decode([UInt8](Data(contentsOf: URL(fileURLWithPath: path))))
    }

    private static func message(_ png: inout png_image) -> String {
        withUnsafeBytes(of: png.message) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
    }
}
