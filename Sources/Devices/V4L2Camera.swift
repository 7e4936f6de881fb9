// The camera through V4L2 and libv4l2. This is the only file that imports CV4L2.
//
// libv4l2 (v4l2_open/v4l2_ioctl/v4l2_mmap) sits between us and the driver and converts
// whatever the camera delivers (YUYV, MJPEG, …) to the I420 we ask for, through
// libv4lconvert. Shape after baresip's modules/v4l2: mmap streaming with a few buffers,
// one xioctl wrapper, one teardown path; a vanished camera is a DeviceError, not a crash.

private import CV4L2
import Glibc
public import Logging
import Synchronization

/// Where to find the camera.
public struct V4L2CameraConfiguration: Sendable, Equatable {
    /// The udev-provided stable name; used when it exists.
    public var devicePath: String
    /// Otherwise the first `video*` node here that can capture and stream.
    public var deviceDirectory: String
    /// mmap buffers queued with the driver.
    public var bufferCount: Int

    public init(devicePath: String = "/dev/beeldzorg/camera", deviceDirectory: String = "/dev", bufferCount: Int = 4) {
        self.devicePath = devicePath
        self.deviceDirectory = deviceDirectory
        self.bufferCount = bufferCount
    }
}

/// Copies an I420 image whose rows may be padded (`bytesPerLine` ≥ width) into the tightly
/// packed layout `VideoFrame` uses. Returns nil if the buffer is too short.
func packI420(_ source: UnsafeRawBufferPointer, width: Int, height: Int, bytesPerLine: Int) -> [UInt8]? {
    let stride = max(bytesPerLine, width)
    let chromaStride = stride / 2
    let (cw, ch) = (width / 2, height / 2)
    let needed = stride * height + 2 * chromaStride * ch
    guard source.count >= needed, width % 2 == 0, height % 2 == 0 else { return nil }
    if stride == width {
        return Array(source[0..<(width * height * 3 / 2)])
    }
    var out = [UInt8](repeating: 0, count: width * height * 3 / 2)
    out.withUnsafeMutableBytes { dst in
        for row in 0..<height {
            dst.baseAddress!.advanced(by: row * width)
                .copyMemory(from: source.baseAddress!.advanced(by: row * stride), byteCount: width)
        }
        let srcChroma = stride * height
        let dstChroma = width * height
        for plane in 0..<2 {
            for row in 0..<ch {
                dst.baseAddress!.advanced(by: dstChroma + plane * cw * ch + row * cw)
                    .copyMemory(from: source.baseAddress!.advanced(by: srcChroma + plane * chromaStride * ch + row * chromaStride),
                                byteCount: cw)
            }
        }
    }
    return out
}

/// A V4L2 capture device delivering I420 frames.
public final class V4L2Camera: CameraSource {
    private let configuration: V4L2CameraConfiguration
    private let logger: Logger
    private let io = Mutex<Session?>(nil)
    private let closing = Atomic<Bool>(false)

    public init(configuration: V4L2CameraConfiguration = V4L2CameraConfiguration(),
                logger: Logger = Logger(label: "beeldzorg.devices.camera")) {
        self.configuration = configuration
        self.logger = logger
    }

    public func open(_ requested: CameraFormat) throws -> CameraFormat {
        try io.withLock { (session: inout Session?) throws(DeviceError) -> CameraFormat in
            session?.teardown()
            session = nil
            closing.store(false, ordering: .relaxed)
            let path = try locate()
            let opened = try Session.start(path: path, requested: requested,
                                           buffers: configuration.bufferCount, logger: logger)
            session = opened
            logger.info("camera opened", metadata: [
                "device": "\(path)", "size": "\(opened.width)x\(opened.height)", "fps": "\(opened.framesPerSecond)",
            ])
            return CameraFormat(width: opened.width, height: opened.height, framesPerSecond: opened.framesPerSecond)
        }
    }

    public func nextFrame() throws -> VideoFrame {
        try io.withLock { (session: inout Session?) throws(DeviceError) -> VideoFrame in
            guard let current = session else {
                throw DeviceError(.io, device: configuration.devicePath, detail: "camera not open")
            }
            do throws(DeviceError) {
                return try current.nextFrame(closing: closing)
            } catch {
                if error.kind == .vanished {
                    current.teardown()
                    session = nil
                }
                throw error
            }
        }
    }

    public func close() {
        closing.store(true, ordering: .relaxed)
        io.withLock { session in
            session?.teardown()
            session = nil
        }
    }

    private func locate() throws(DeviceError) -> String {
        if access(configuration.devicePath, F_OK) == 0 { return configuration.devicePath }
        var problems: [String] = []
        for path in Self.videoNodes(in: configuration.deviceDirectory) {
            switch Session.probe(path) {
            case .success: return path
            case .failure(let error): problems.append("\(path): \(error.detail)")
            }
        }
        var detail = "no \(configuration.devicePath) and no capture device in \(configuration.deviceDirectory)"
        if !problems.isEmpty { detail += " (" + problems.joined(separator: "; ") + ")" }
        throw DeviceError(.notFound, device: configuration.devicePath, detail: detail)
    }

    static func videoNodes(in directory: String) -> [String] {
        guard let dir = opendir(directory) else { return [] }
        defer { closedir(dir) }
        var numbers: [Int] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            if name.hasPrefix("video"), let n = Int(name.dropFirst(5)) { numbers.append(n) }
        }
        return numbers.sorted().map { "\(directory)/video\($0)" }
    }
}

/// One open, streaming device. Only touched with the camera's lock held.
private final class Session: @unchecked Sendable {
    let path: String
    let fd: Int32
    let width: Int
    let height: Int
    let bytesPerLine: Int
    let framesPerSecond: Int
    let logger: Logger
    private var buffers: [(start: UnsafeMutableRawPointer, length: Int)] = []
    private var streaming = false
    private var firstTimestamp: Duration?
    private var closed = false

    private init(path: String, fd: Int32, width: Int, height: Int, bytesPerLine: Int, framesPerSecond: Int, logger: Logger) {
        self.path = path
        self.fd = fd
        self.width = width
        self.height = height
        self.bytesPerLine = bytesPerLine
        self.framesPerSecond = framesPerSecond
        self.logger = logger
    }

    /// ioctl through libv4l2, retried on EINTR; the errno on failure.
    private static func xioctl(_ fd: Int32, _ request: UInt, _ arg: UnsafeMutableRawPointer) -> Int32 {
        while true {
            if cv4l2_ioctl(fd, request, arg) >= 0 { return 0 }
            if errno != EINTR { return errno }
        }
    }

    private static func error(_ path: String, _ call: String, _ err: Int32, logger: Logger?) -> DeviceError {
        let kind: DeviceError.Kind
        switch err {
        case ENODEV, ENXIO, EIO: kind = .vanished
        case ENOENT: kind = .notFound
        case EBUSY: kind = .busy
        case EINVAL, ENOTTY: kind = .unsupported
        default: kind = .io
        }
        let detail = "\(call): \(Posix.errorString(err))"
        logger?.error("\(path): \(detail)")
        return DeviceError(kind, device: path, detail: detail)
    }

    /// Whether `path` is a streaming capture device (used when choosing a camera).
    static func probe(_ path: String) -> Result<Void, DeviceError> {
        let fd = cv4l2_open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { return .failure(error(path, "v4l2_open", errno, logger: nil)) }
        defer { v4l2_close(fd) }
        do throws(DeviceError) {
            try checkCapabilities(fd, path: path, logger: nil)
            return .success(())
        } catch {
            return .failure(error)
        }
    }

    private static func checkCapabilities(_ fd: Int32, path: String, logger: Logger?) throws(DeviceError) {
        var cap = v4l2_capability()
        let err = xioctl(fd, cv4l2_VIDIOC_QUERYCAP(), &cap)
        if err != 0 { throw error(path, "VIDIOC_QUERYCAP", err, logger: logger) }
        let caps = (cap.capabilities & cv4l2_cap_device_caps()) != 0 ? cap.device_caps : cap.capabilities
        guard caps & cv4l2_cap_video_capture() != 0, caps & cv4l2_cap_streaming() != 0 else {
            throw DeviceError(.unsupported, device: path, detail: "not a streaming video capture device")
        }
    }

    static func start(path: String, requested: CameraFormat, buffers count: Int, logger: Logger) throws(DeviceError) -> Session {
        let fd = cv4l2_open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { throw error(path, "v4l2_open", errno, logger: logger) }
        let negotiated: (width: Int, height: Int, bytesPerLine: Int, fps: Int)
        do {
            negotiated = try negotiate(fd, path: path, requested: requested, logger: logger)
        } catch {
            v4l2_close(fd)
            throw error
        }
        // From here on the session owns the descriptor and its teardown closes it.
        let session = Session(path: path, fd: fd, width: negotiated.width, height: negotiated.height,
                              bytesPerLine: negotiated.bytesPerLine, framesPerSecond: negotiated.fps, logger: logger)
        do {
            try session.startStreaming(count: count)
        } catch {
            session.teardown()
            throw error
        }
        return session
    }

    private static func negotiate(_ fd: Int32, path: String, requested: CameraFormat, logger: Logger)
        throws(DeviceError) -> (width: Int, height: Int, bytesPerLine: Int, fps: Int)
    {
        try checkCapabilities(fd, path: path, logger: logger)

        // Ask for I420 at the requested size; libv4l2 converts from the camera's format.
        var format = v4l2_format()
        format.type = V4L2_BUF_TYPE_VIDEO_CAPTURE.rawValue
        format.fmt.pix.width = UInt32(requested.width)
        format.fmt.pix.height = UInt32(requested.height)
        format.fmt.pix.pixelformat = cv4l2_pix_fmt_yuv420()
        format.fmt.pix.field = V4L2_FIELD_NONE.rawValue
        let err = xioctl(fd, cv4l2_VIDIOC_S_FMT(), &format)
        if err != 0 { throw error(path, "VIDIOC_S_FMT I420 \(requested.width)x\(requested.height)", err, logger: logger) }
        guard format.fmt.pix.pixelformat == cv4l2_pix_fmt_yuv420() else {
            throw DeviceError(.unsupported, device: path, detail: "cannot deliver I420 (got fourcc \(format.fmt.pix.pixelformat))")
        }
        let width = Int(format.fmt.pix.width)
        let height = Int(format.fmt.pix.height)
        guard width > 0, height > 0, width % 2 == 0, height % 2 == 0 else {
            throw DeviceError(.unsupported, device: path, detail: "odd frame size \(width)x\(height)")
        }
        let bytesPerLine = max(Int(format.fmt.pix.bytesperline), width)

        // Frame rate: best effort; many drivers ignore it or pick the nearest.
        var parm = v4l2_streamparm()
        parm.type = V4L2_BUF_TYPE_VIDEO_CAPTURE.rawValue
        var fps = requested.framesPerSecond
        if xioctl(fd, cv4l2_VIDIOC_G_PARM(), &parm) == 0,
           parm.parm.capture.capability & cv4l2_cap_timeperframe() != 0 {
            parm.parm.capture.timeperframe = v4l2_fract(numerator: 1, denominator: UInt32(requested.framesPerSecond))
            let setErr = xioctl(fd, cv4l2_VIDIOC_S_PARM(), &parm)
            if setErr == 0 {
                let tpf = parm.parm.capture.timeperframe
                if tpf.numerator > 0 { fps = Int((Double(tpf.denominator) / Double(tpf.numerator)).rounded()) }
            } else {
                logger.warning("\(path): VIDIOC_S_PARM \(requested.framesPerSecond) fps: \(Posix.errorString(setErr))")
            }
        }
        return (width, height, bytesPerLine, fps)
    }

    private func startStreaming(count: Int) throws(DeviceError) {
        var req = v4l2_requestbuffers()
        req.count = UInt32(count)
        req.type = V4L2_BUF_TYPE_VIDEO_CAPTURE.rawValue
        req.memory = V4L2_MEMORY_MMAP.rawValue
        var err = Self.xioctl(fd, cv4l2_VIDIOC_REQBUFS(), &req)
        if err != 0 { throw Self.error(path, "VIDIOC_REQBUFS", err, logger: logger) }
        guard req.count >= 2 else {
            throw DeviceError(.unsupported, device: path, detail: "driver granted only \(req.count) buffers")
        }
        for index in 0..<req.count {
            var buf = v4l2_buffer()
            buf.type = V4L2_BUF_TYPE_VIDEO_CAPTURE.rawValue
            buf.memory = V4L2_MEMORY_MMAP.rawValue
            buf.index = index
            err = Self.xioctl(fd, cv4l2_VIDIOC_QUERYBUF(), &buf)
            if err != 0 { throw Self.error(path, "VIDIOC_QUERYBUF \(index)", err, logger: logger) }
            let start = v4l2_mmap(nil, Int(buf.length), PROT_READ | PROT_WRITE, MAP_SHARED, fd, Int64(buf.m.offset))
            guard let start, start != MAP_FAILED else {
                throw Self.error(path, "v4l2_mmap \(index)", errno, logger: logger)
            }
            buffers.append((start, Int(buf.length)))
            err = Self.xioctl(fd, cv4l2_VIDIOC_QBUF(), &buf)
            if err != 0 { throw Self.error(path, "VIDIOC_QBUF \(index)", err, logger: logger) }
        }
        var type = Int32(V4L2_BUF_TYPE_VIDEO_CAPTURE.rawValue)
        err = Self.xioctl(fd, cv4l2_VIDIOC_STREAMON(), &type)
        if err != 0 { throw Self.error(path, "VIDIOC_STREAMON", err, logger: logger) }
        streaming = true
    }

    func nextFrame(closing: borrowing Atomic<Bool>) throws(DeviceError) -> VideoFrame {
        // A frame normally arrives within 1/fps; two seconds of nothing means the camera hung.
        let deadline = Posix.monotonicNow() + .seconds(2)
        while true {
            if closing.load(ordering: .relaxed) { throw DeviceError(.io, device: path, detail: "closed") }
            let ready = Posix.poll([fd], timeoutMilliseconds: 100)
            if !ready[0] {
                if Posix.monotonicNow() > deadline {
                    throw DeviceError(.io, device: path, detail: "no frame for 2 s")
                }
                continue
            }
            var buf = v4l2_buffer()
            buf.type = V4L2_BUF_TYPE_VIDEO_CAPTURE.rawValue
            buf.memory = V4L2_MEMORY_MMAP.rawValue
            let err = Self.xioctl(fd, cv4l2_VIDIOC_DQBUF(), &buf)
            if err == EAGAIN { continue }
            if err != 0 { throw Self.error(path, "VIDIOC_DQBUF", err, logger: logger) }
            let mapped = buffers[Int(buf.index)]
            let used = buf.bytesused > 0 ? Int(buf.bytesused) : mapped.length
            let planes = packI420(UnsafeRawBufferPointer(start: mapped.start, count: min(used, mapped.length)),
                                  width: width, height: height, bytesPerLine: bytesPerLine)
            let requeue = Self.xioctl(fd, cv4l2_VIDIOC_QBUF(), &buf)
            if requeue != 0 { throw Self.error(path, "VIDIOC_QBUF", requeue, logger: logger) }
            guard let planes else {
                logger.warning("\(path): short frame (\(used) bytes for \(width)x\(height)); skipped")
                continue
            }
            let stamp = Duration.seconds(Int64(buf.timestamp.tv_sec)) + .microseconds(Int64(buf.timestamp.tv_usec))
            let first = firstTimestamp ?? stamp
            firstTimestamp = first
            return VideoFrame(width: width, height: height, planes: planes, timestamp: stamp - first)
        }
    }

    /// The one teardown path: stream off, unmap, close. Safe to call twice.
    func teardown() {
        guard !closed else { return }
        closed = true
        if streaming {
            var type = Int32(V4L2_BUF_TYPE_VIDEO_CAPTURE.rawValue)
            _ = Self.xioctl(fd, cv4l2_VIDIOC_STREAMOFF(), &type)
            streaming = false
        }
        for buffer in buffers { _ = v4l2_munmap(buffer.start, buffer.length) }
        buffers = []
        v4l2_close(fd)
    }
}
