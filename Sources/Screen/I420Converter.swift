public import Devices
import CYUV
import Synchronization

/// I420 (the decoder's and the camera's format) to XRGB8888 (the connector's), scaled into a
/// rectangle of a `ScreenImage`, with libyuv's SIMD code.
///
/// Two steps: `I420Scale` scales the picture to the rectangle's size into a scratch I420
/// buffer, then `I420ToARGB` converts the visible part of it into the image. The filter is
/// libyuv's box filter: enlarging (a 640×480 picture is shown about 1.7× on a 1280×800 panel,
/// where nearest-neighbour shows blocky edges) it is bilinear, shrinking (the self view) it
/// averages; on this 2-core host it costs about 0.3 ms a 1066×800 frame more than
/// nearest-neighbour (see `screen-benchmark`). Scaling before converting moves 1.5 bytes a pixel through the filter
/// instead of 4. A picture that already has the rectangle's size is converted without the
/// scaling step. Colour is BT.601 limited range (what libvpx produces and V4L2 webcams
/// deliver); chroma is shared by each 2×2 block of the scaled picture, as in I420.
///
/// libyuv's ARGB is our XRGB layout (0xAARRGGBB as a little-endian UInt32) but with alpha
/// 0xFF; the top byte is cleared afterwards so that converted pixels equal the rest of the
/// image's (0x00RRGGBB: PNG encoding, image comparisons; the DRM connector ignores it).
public enum I420Converter {
    /// Scratch I420 picture of the rectangle's size, reused across frames and grown when a
    /// larger rectangle comes. `draw` runs on the screen thread only; the lock keeps the
    /// buffer safe should that change.
    private static let scratch = Mutex<[UInt8]>([])

    /// Draws `frame` scaled to exactly `rect` (clipped to the image). Callers keep the aspect
    /// ratio by choosing `rect` with `Rect.fitting`.
    public static func draw(_ frame: VideoFrame, into image: inout ScreenImage, rect: Rect) {
        let visible = rect.clipped(width: image.width, height: image.height)
        guard !visible.isEmpty, rect.width > 0, rect.height > 0 else { return }
        let srcW = frame.width, srcH = frame.height
        let dstW = rect.width, dstH = rect.height
        let chromaW = (dstW + 1) / 2, chromaH = (dstH + 1) / 2
        let needsScaling = srcW != dstW || srcH != dstH
        let imageWidth = image.width
        scratch.withLock { buffer in
            if needsScaling, buffer.count < dstW * dstH + 2 * chromaW * chromaH {
                buffer = [UInt8](repeating: 0, count: dstW * dstH + 2 * chromaW * chromaH)
            }
            frame.planes.withUnsafeBufferPointer { source in
            buffer.withUnsafeMutableBufferPointer { scratch in
            image.pixels.withUnsafeMutableBufferPointer { pixels in
                let src = source.baseAddress!
                let picture: Planes
                if needsScaling {
                    let y = scratch.baseAddress!, u = y + dstW * dstH, v = u + chromaW * chromaH
                    I420Scale(src, Int32(srcW), src + frame.lumaCount, Int32(srcW / 2),
                              src + frame.lumaCount + frame.chromaCount, Int32(srcW / 2),
                              Int32(srcW), Int32(srcH),
                              y, Int32(dstW), u, Int32(chromaW), v, Int32(chromaW),
                              Int32(dstW), Int32(dstH), kFilterBox)
                    picture = Planes(y: y, u: u, v: v, lumaStride: dstW, chromaStride: chromaW)
                } else {
                    picture = Planes(y: src, u: src + frame.lumaCount, v: src + frame.lumaCount + frame.chromaCount,
                                     lumaStride: srcW, chromaStride: srcW / 2)
                }
                convert(picture, fromX: visible.x - rect.x, y: visible.y - rect.y,
                        width: visible.width, height: visible.height,
                        into: pixels.baseAddress! + visible.y * imageWidth + visible.x, stride: imageWidth)
            }}}
        }
    }

    private struct Planes {
        var y: UnsafePointer<UInt8>
        var u: UnsafePointer<UInt8>
        var v: UnsafePointer<UInt8>
        var lumaStride: Int
        var chromaStride: Int

        init(y: UnsafePointer<UInt8>, u: UnsafePointer<UInt8>, v: UnsafePointer<UInt8>, lumaStride: Int, chromaStride: Int) {
            (self.y, self.u, self.v, self.lumaStride, self.chromaStride) = (y, u, v, lumaStride, chromaStride)
        }

        init(y: UnsafeMutablePointer<UInt8>, u: UnsafeMutablePointer<UInt8>, v: UnsafeMutablePointer<UInt8>,
             lumaStride: Int, chromaStride: Int) {
            self.init(y: UnsafePointer(y), u: UnsafePointer(u), v: UnsafePointer(v),
                      lumaStride: lumaStride, chromaStride: chromaStride)
        }
    }

    /// Converts the `width`×`height` part of `picture` at (`x`, `y`) to `destination`.
    /// `I420ToARGB` pairs rows and columns from the first one it is given, so an odd first
    /// row or column (a rectangle clipped at the top or left) is converted on its own to keep
    /// each pixel with its own chroma sample.
    private static func convert(_ picture: Planes, fromX x: Int, y: Int, width: Int, height: Int,
                                into destination: UnsafeMutablePointer<UInt32>, stride: Int) {
        let rows = y % 2 == 1 ? [(y, 1), (y + 1, height - 1)] : [(y, height)]
        let columns = x % 2 == 1 ? [(x, 1), (x + 1, width - 1)] : [(x, width)]
        for (row, rowCount) in rows where rowCount > 0 {
            for (column, columnCount) in columns where columnCount > 0 {
                let out = destination + (row - y) * stride + (column - x)
                out.withMemoryRebound(to: UInt8.self, capacity: (rowCount - 1) * stride * 4 + columnCount * 4) { bytes in
                    _ = I420ToARGB(picture.y + row * picture.lumaStride + column, Int32(picture.lumaStride),
                                   picture.u + (row / 2) * picture.chromaStride + column / 2, Int32(picture.chromaStride),
                                   picture.v + (row / 2) * picture.chromaStride + column / 2, Int32(picture.chromaStride),
                                   bytes, Int32(stride * 4), Int32(columnCount), Int32(rowCount))
                }
            }
        }
        // libyuv writes alpha 0xFF; our pixels carry 0 in the top byte.
        for row in 0..<height {
            let line = destination + row * stride
            for column in 0..<width { line[column] &= 0x00FF_FFFF }
        }
    }

    /// The XRGB colour of one I420 sample, as `draw` produces it (for tests and the
    /// integration check): a 2×2 picture of that sample through the same libyuv conversion.
    public static func colour(y: UInt8, u: UInt8, v: UInt8) -> UInt32 {
        let picture: [UInt8] = [y, y, y, y, u, v]  // 2×2 luma, one U, one V
        var out = [UInt32](repeating: 0, count: 4)
        picture.withUnsafeBufferPointer { source in
            out.withUnsafeMutableBufferPointer { pixels in
                let p = source.baseAddress!
                convert(Planes(y: p, u: p + 4, v: p + 5, lumaStride: 2, chromaStride: 1),
                        fromX: 0, y: 0, width: 2, height: 2, into: pixels.baseAddress!, stride: 2)
            }
        }
        return out[0]
    }
}
