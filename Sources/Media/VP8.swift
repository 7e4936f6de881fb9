// The one file that imports libvpx. VP8 only, I420 in and out, realtime deadline.
public import Devices
private import CVPX

/// One encoded VP8 frame as the encoder produced it (before RTP packetisation).
public struct EncodedVideoFrame: Sendable, Equatable {
    public var data: [UInt8]
    public var isKeyframe: Bool
    public var timestamp: Duration

    public init(data: [UInt8], isKeyframe: Bool, timestamp: Duration) {
        self.data = data
        self.isKeyframe = isKeyframe
        self.timestamp = timestamp
    }
}

private func vpxError(_ context: UnsafeMutablePointer<vpx_codec_ctx_t>, _ what: String, _ status: vpx_codec_err_t) -> MediaError {
    let detail = vpx_codec_error_detail(context).map { String(cString: $0) } ?? ""
    return .vpx("\(what): \(String(cString: vpx_codec_err_to_string(status))) \(detail)")
}

/// VP8 encoder for live video: realtime deadline, no lag, CBR, error resilient, keyframes
/// on request (PLI/FIR) and a bitrate that can change between frames.
///
/// One encoder thread by default: libvpx's VP8 row threads wait for each other by spinning,
/// and on a 2-core tablet that also decodes, plays audio and cancels echo, two threads cost
/// about ten times the CPU of one for 640×480@25 (measured with ffmpeg's libvpx here: 8.3 s
/// against 0.7 s for 10 s of video under load) while one thread encodes a frame in ~2 ms.
public final class VP8Encoder {
    public let width: Int
    public let height: Int
    private let context: UnsafeMutablePointer<vpx_codec_ctx_t>
    private var config: vpx_codec_enc_cfg_t
    /// Presentation time of the last frame in `ticksPerSecond` units, nil before the first.
    private var lastPTS: Int64? = nil
    private let framesPerSecond: Int
    /// The encoder's time base: the RTP video clock, fine enough for any camera's rate.
    private static let ticksPerSecond: Int64 = 90_000

    public init(width: Int, height: Int, framesPerSecond: Int = 25, bitrate: Int = 800_000, threads: Int = 1) throws {
        self.width = width
        self.height = height
        self.framesPerSecond = max(1, framesPerSecond)
        context = .allocate(capacity: 1)
        context.initialize(to: vpx_codec_ctx_t())
        config = vpx_codec_enc_cfg_t()
        var status = beeldzorg_vpx_enc_config_default_vp8(&config)
        guard status == VPX_CODEC_OK else {
            context.deallocate()
            throw MediaError.vpx("vpx_codec_enc_config_default: \(String(cString: vpx_codec_err_to_string(status)))")
        }
        config.g_w = UInt32(width)
        config.g_h = UInt32(height)
        // Frames carry their capture time: libvpx's rate control divides the target among
        // the frames that really come (a camera giving 12 fps in dim light still gets the
        // whole target, not half of it), so the time base is a clock, not the nominal rate.
        config.g_timebase = vpx_rational(num: 1, den: Int32(Self.ticksPerSecond))
        config.rc_target_bitrate = UInt32(max(50, bitrate / 1_000))
        config.g_threads = UInt32(max(1, threads))
        config.g_lag_in_frames = 0
        config.g_error_resilient = vpx_codec_er_flags_t(VPX_ERROR_RESILIENT_DEFAULT)
        config.rc_end_usage = VPX_CBR
        // Never skip a frame to meet the rate: the receiver counts frames.
        config.rc_dropframe_thresh = 0
        config.rc_min_quantizer = 4
        config.rc_max_quantizer = 56
        config.rc_buf_sz = 1_000
        config.rc_buf_initial_sz = 500
        config.rc_buf_optimal_sz = 600
        config.kf_mode = VPX_KF_AUTO
        // A periodic keyframe lets a receiver that missed the start join within seconds.
        config.kf_max_dist = UInt32(self.framesPerSecond * 5)
        status = beeldzorg_vpx_enc_init_vp8(context, &config)
        guard status == VPX_CODEC_OK else {
            let error = vpxError(context, "vpx_codec_enc_init", status)
            context.deallocate()
            throw error
        }
        // 16 is libvpx's fastest realtime setting (no sub-pixel motion search), as baresip
        // and Chromium's remoting use; a talking head at 640×480 hardly needs more.
        _ = beeldzorg_vpx_set_cpuused(context, 16)
        _ = beeldzorg_vpx_set_static_threshold(context, 1)
        _ = beeldzorg_vpx_set_noise_sensitivity(context, 0)
        _ = beeldzorg_vpx_set_max_intra_bitrate_pct(context, 900)
    }

    deinit {
        vpx_codec_destroy(context)
        context.deallocate()
    }

    /// Target bitrate in bits per second; takes effect from the next frame.
    public var bitrate: Int { Int(config.rc_target_bitrate) * 1_000 }

    public func setBitrate(_ bitsPerSecond: Int) throws {
        config.rc_target_bitrate = UInt32(max(50, bitsPerSecond / 1_000))
        let status = vpx_codec_enc_config_set(context, &config)
        guard status == VPX_CODEC_OK else { throw vpxError(context, "vpx_codec_enc_config_set", status) }
    }

    /// The frame's time in encoder ticks and how long it lasts (until the next frame, as far
    /// as known now: the gap since the previous one). Time never goes backwards for libvpx: a
    /// frame stamped at or before its predecessor counts one tick later.
    private func presentation(of timestamp: Duration) -> (pts: vpx_codec_pts_t, duration: Int64) {
        let (seconds, attoseconds) = timestamp.components
        let ticks = seconds * Self.ticksPerSecond + attoseconds / (1_000_000_000_000_000_000 / Self.ticksPerSecond)
        let nominal = Self.ticksPerSecond / Int64(framesPerSecond)
        guard let last = lastPTS else {
            lastPTS = ticks
            return (vpx_codec_pts_t(ticks), nominal)
        }
        let pts = max(ticks, last + 1)
        lastPTS = pts
        return (vpx_codec_pts_t(pts), pts - last)
    }

    /// Encodes one frame; normally returns one encoded frame (none if the encoder drops it).
    public func encode(_ frame: VideoFrame, forceKeyframe: Bool = false) throws -> [EncodedVideoFrame] {
        guard frame.width == width, frame.height == height else {
            throw MediaError.vpx("frame \(frame.width)x\(frame.height) does not match encoder \(width)x\(height)")
        }
        let (pts, duration) = presentation(of: frame.timestamp)
        var image = vpx_image_t()
        // libvpx only reads the picture; wrapping the frame's own storage (not a mutable copy
        // of it) saves a 460 KB copy per 640×480 frame.
        let status: vpx_codec_err_t = frame.planes.withUnsafeBufferPointer { buffer in
            guard vpx_img_wrap(&image, VPX_IMG_FMT_I420, UInt32(width), UInt32(height), 1,
                               UnsafeMutablePointer(mutating: buffer.baseAddress)) != nil else {
                return VPX_CODEC_MEM_ERROR
            }
            let flags: vpx_enc_frame_flags_t = forceKeyframe ? vpx_enc_frame_flags_t(VPX_EFLAG_FORCE_KF) : 0
            return vpx_codec_encode(context, &image, pts, UInt(duration), flags, UInt(VPX_DL_REALTIME))
        }
        guard status == VPX_CODEC_OK else { throw vpxError(context, "vpx_codec_encode", status) }
        var output: [EncodedVideoFrame] = []
        var iterator: vpx_codec_iter_t? = nil
        while let packet = vpx_codec_get_cx_data(context, &iterator) {
            guard packet.pointee.kind == VPX_CODEC_CX_FRAME_PKT else { continue }
            let encoded = packet.pointee.data.frame
            guard let bytes = encoded.buf else { continue }
            let data = [UInt8](UnsafeRawBufferPointer(start: bytes, count: encoded.sz))
            output.append(EncodedVideoFrame(
                data: data,
                isKeyframe: (encoded.flags & vpx_codec_frame_flags_t(VPX_FRAME_IS_KEY)) != 0,
                timestamp: frame.timestamp))
        }
        return output
    }
}

/// VP8 decoder: one complete encoded frame in, one I420 `VideoFrame` out.
public final class VP8Decoder {
    private let context: UnsafeMutablePointer<vpx_codec_ctx_t>

    public init() throws {
        context = .allocate(capacity: 1)
        context.initialize(to: vpx_codec_ctx_t())
        let status = beeldzorg_vpx_dec_init_vp8(context)
        guard status == VPX_CODEC_OK else {
            let error = vpxError(context, "vpx_codec_dec_init", status)
            context.deallocate()
            throw error
        }
    }

    deinit {
        vpx_codec_destroy(context)
        context.deallocate()
    }

    public func decode(_ data: [UInt8], timestamp: Duration = .zero) throws -> VideoFrame? {
        let status = data.withUnsafeBufferPointer { buffer in
            vpx_codec_decode(context, buffer.baseAddress, UInt32(buffer.count), nil, 0)
        }
        guard status == VPX_CODEC_OK else { throw vpxError(context, "vpx_codec_decode", status) }
        var iterator: vpx_codec_iter_t? = nil
        var result: VideoFrame? = nil
        while let image = vpx_codec_get_frame(context, &iterator) {
            result = Self.copy(image.pointee, timestamp: timestamp)
        }
        return result
    }

    private static func copy(_ image: vpx_image_t, timestamp: Duration) -> VideoFrame? {
        // VideoFrame needs even sizes; an odd-sized picture loses its last row/column.
        let width = Int(image.d_w) & ~1
        let height = Int(image.d_h) & ~1
        guard width > 0, height > 0, image.fmt == VPX_IMG_FMT_I420,
              let yPlane = image.planes.0, let uPlane = image.planes.1, let vPlane = image.planes.2 else { return nil }
        // Every byte is written by the three plane copies, so the array is not zero-filled
        // first (a 460 KB memset per 640×480 frame showed in the receive thread's profile).
        let count = width * height * 3 / 2
        let planes = [UInt8](unsafeUninitializedCapacity: count) { out, initialized in
            var offset = 0
            func copyPlane(_ source: UnsafeMutablePointer<UInt8>, stride: Int32, rows: Int, columns: Int) {
                for row in 0..<rows {
                    (out.baseAddress! + offset).initialize(from: source + row * Int(stride), count: columns)
                    offset += columns
                }
            }
            copyPlane(yPlane, stride: image.stride.0, rows: height, columns: width)
            copyPlane(uPlane, stride: image.stride.1, rows: height / 2, columns: width / 2)
            copyPlane(vPlane, stride: image.stride.2, rows: height / 2, columns: width / 2)
            initialized = offset
        }
        return VideoFrame(width: width, height: height, planes: planes, timestamp: timestamp)
    }
}
