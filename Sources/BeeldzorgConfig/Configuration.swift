import Foundation

/// Everything `beeldzorgd` reads from `/etc/beeldzorg/beeldzorgd.yaml`, validated as a whole:
/// a file either loads completely or is refused with an error that names the key and line,
/// so the daemon never starts half-configured. See `config/beeldzorgd.example.yaml`.
public struct Configuration: Sendable, Equatable {
    public static let defaultPath = "/etc/beeldzorg/beeldzorgd.yaml"

    public enum Transport: String, Sendable, CaseIterable { case udp, tcp, tls }
    public enum RingPolicy: String, Sendable, CaseIterable { case ringAll = "ring_all", hunt }
    public enum SRTPMode: String, Sendable, CaseIterable { case required, off }

    public struct Account: Sendable, Equatable {
        /// SIP user part of the tablet's address of record.
        public var user: String
        public var domain: String
        public var displayName: String?
        /// Digest password lives in its own file (mode 0600), never in this one, never in logs.
        public var passwordFile: String?
        /// Local address and port the user agent binds; port 0 lets the system choose.
        public var listenHost: String
        public var listenPort: Int
    }

    public struct Post: Sendable, Equatable {
        public var id: String
        public var uri: String
    }

    public struct Centrale: Sendable, Equatable {
        public var posts: [Post]
        public var policy: RingPolicy
        public var perPostTimeoutSeconds: Int
        public var deadlineSeconds: Int
        public var reassuranceSeconds: Int
        /// Where callback requests go as a SIP MESSAGE (`callback_uri`), through the edge
        /// proxies; nil: no MESSAGE (the organisation's server may still receive them).
        public var callbackURI: String? = nil
        /// Where a request goes that `callbackURI` did not acknowledge within
        /// `callbackEscalateSeconds` (`callback_fallback_uri`, e.g. another site).
        public var callbackFallbackURI: String? = nil
        /// `callback_escalate_after_seconds`, counted from when the request was made.
        public var callbackEscalateSeconds: Int = 120
    }

    public struct Button: Sendable, Equatable {
        /// An evdev node, `fifo:PATH` or `stdin` (demo and tests).
        public var device: String
        public var keyCode: Int
        public var longPressMilliseconds: Int
        public var debounceMilliseconds: Int
    }

    public struct Camera: Sendable, Equatable {
        /// A V4L2 node or `test-pattern`.
        public var device: String
        public var width: Int
        public var height: Int
        public var framesPerSecond: Int
    }

    public struct Audio: Sendable, Equatable {
        /// ALSA PCM names, or `tone:HZ` / `silence` (capture) and `null` (playback).
        public var capture: String
        public var playback: String
        public var echoCancellation: Bool
        /// The ALSA control device whose mixer holds the levels (`mixer`); nil derives it from
        /// `playback` (`hw:N` for `hw:N,M` / `plughw:N,M`, else `default`).
        public var mixer: String? = nil
        /// Simple mixer element for the speaker (`playback_mixer`); nil manages none.
        public var playbackMixer: String? = "Master"
        /// Simple mixer element for the microphone (`capture_mixer`); nil manages none.
        public var captureMixer: String? = "Capture"
        /// No level is ever set below this (percent): the tablet stays audible and the
        /// client heard (`volume_floor`).
        public var volumeFloor: Int = 40
        /// Nor above this (`volume_ceiling`).
        public var volumeCeiling: Int = 100
        /// Levels until provisioning or a technician sets others (`volume`, `capture_volume`).
        public var volume: Int = 80
        public var captureVolume: Int = 80

        /// The control device the mixer is opened on.
        public var mixerDevice: String {
            if let mixer { return mixer }
            for prefix in ["plughw:", "hw:"] where playback.hasPrefix(prefix) {
                let card = playback.dropFirst(prefix.count).split(separator: ",").first.map(String.init) ?? "0"
                return "hw:\(card)"
            }
            return "default"
        }
    }

    /// The call's media (`media:`).
    public struct Media: Sendable, Equatable {
        /// A call in which nothing (no RTP, no RTCP) came from the other side for this long
        /// is ended as "connection lost" (a post that died without BYE). Held calls stay up
        /// on the post's RTCP.
        public var livenessTimeoutSeconds: Int
        /// Voice processing on the microphone beside echo cancellation (`media.voice:`).
        public var voice: Voice

        public init(livenessTimeoutSeconds: Int = 15, voice: Voice = Voice()) {
            self.livenessTimeoutSeconds = livenessTimeoutSeconds
            self.voice = voice
        }
    }

    /// webrtc-audio-processing beside the echo canceller (`media.voice:`), each on by default:
    /// clients speak softly or from across the room, with a television or a fan on.
    public struct Voice: Sendable, Equatable {
        /// Adaptive digital automatic gain control (`agc`).
        public var gainControl: Bool
        /// Stationary noise suppression (`noise_suppression`).
        public var noiseSuppression: Bool
        /// Hum and rumble below about 80 Hz removed (`high_pass_filter`).
        public var highPassFilter: Bool

        public init(gainControl: Bool = true, noiseSuppression: Bool = true, highPassFilter: Bool = true) {
            self.gainControl = gainControl
            self.noiseSuppression = noiseSuppression
            self.highPassFilter = highPassFilter
        }
    }

    /// Limits on the SIP/TCP connections the tablet accepts (`sip_tcp:`, with `transport: tcp`),
    /// so a flood of connections cannot take the descriptors the control socket, media and
    /// database need. Connections the tablet dials itself are not counted.
    public struct SIPTCP: Sendable, Equatable {
        public var maxConnections: Int
        public var maxConnectionsPerAddress: Int
        /// An accepted connection silent this long is closed.
        public var idleTimeoutSeconds: Int
        /// A header block begun must be complete within this time (a slow-loris peer).
        public var headerTimeoutSeconds: Int

        public init(maxConnections: Int = 128, maxConnectionsPerAddress: Int = 32, idleTimeoutSeconds: Int = 64,
                    headerTimeoutSeconds: Int = 10) {
            self.maxConnections = maxConnections
            self.maxConnectionsPerAddress = maxConnectionsPerAddress
            self.idleTimeoutSeconds = idleTimeoutSeconds
            self.headerTimeoutSeconds = headerTimeoutSeconds
        }
    }

    /// Where the tablet fetches its contacts and settings and delivers its call log
    /// (`provisioning:`); nil when the section is absent (no server: the store is filled by
    /// other means, e.g. the demo).
    public struct Provisioning: Sendable, Equatable {
        /// https:// URL of the tablet's provisioning document.
        public var url: String
        /// File (mode 0600) holding the bearer token; never in this file, never in logs.
        public var tokenFile: String
        /// The pinned CA for the organisation's server; nil trusts the system's roots.
        public var caFile: String?
        public var intervalMinutes: Int
        /// https:// base for uploads (`POST {base}/calls`, `{base}/callback-requests`); nil
        /// derives it from `url` by dropping the last path segment.
        public var uploadURL: String?
        /// Seconds between health reports (`health_interval_seconds`); a fault appearing or
        /// clearing is reported at once regardless.
        public var healthIntervalSeconds: Int = 300
        /// https:// URL health reports are POSTed to; nil means `{upload base}/health`.
        public var healthURL: String? = nil
    }

    /// What the client sees (`screen:`).
    public struct Screen: Sendable, Equatable {
        /// `auto` (the first DRM card with a connected panel, else `/dev/fb0`, else off-screen
        /// only), a DRM card (`/dev/dri/cardN`), a framebuffer (`/dev/fbN`), `offscreen`
        /// (drawn in memory for screenshots; tests and the demo) or `none`.
        public var device: String
        /// The idle screen dims after this many seconds without a call or press; 0 never dims.
        public var dimAfterSeconds: Int
        /// A TrueType font file for all text.
        public var font: String

        public static let defaultFont = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"

        public init(device: String = "auto", dimAfterSeconds: Int = 120, font: String = Screen.defaultFont) {
            self.device = device
            self.dimAfterSeconds = dimAfterSeconds
            self.font = font
        }
    }

    public var account: Account
    public var transport: Transport
    public var edgeProxies: [String]
    public var caFile: String?
    public var srtp: SRTPMode
    public var centrale: Centrale
    public var button: Button
    public var camera: Camera
    public var audio: Audio
    /// Kernel LED class name (`/sys/class/leds/NAME`); nil when the tablet has none.
    public var statusLED: String?
    public var databasePath: String
    public var controlSocket: String
    /// The technicians' group (`control_group`, a name or a numeric gid): the control socket is
    /// given to it, and only its members (besides root and the daemon) may read personal data
    /// (`calls`, `contacts`) through it.
    public var controlGroup = "beeldzorg-tech"
    public var language: String
    /// Folder holding `LANGUAGE.txt` (the prompt texts) and the WAVs rendered from it.
    public var promptsDirectory: String
    /// Start the built-in loopback demo centrale (for `make demo` only).
    public var demoCentrale: Bool
    public var provisioning: Provisioning? = nil
    public var screen = Screen()
    public var media = Media()
    public var sipTCP = SIPTCP()
    /// The line of each key that names a file (`ca_file`, `account.password_file`,
    /// `provisioning.token_file`, ...), so a check of the file itself can say where it was
    /// named (`ConfigurationFiles` in the daemon).
    public var lines: [String: Int] = [:]

    /// A configuration file larger than this is refused before it is read: a real one is a
    /// few kilobytes, and YAML's node tree costs many times the file's size in memory.
    public static let maximumFileBytes = 1 << 20

    /// Parses and validates a configuration file's text.
    public static func parse(_ text: String) throws(ConfigError) -> Configuration {
        var root = try ConfigReader.root(yaml: text)

        guard var account = try root.section("account") else {
            throw ConfigError(key: "account", line: nil, message: "required but missing")
        }
        let parsedAccount = Account(
            user: try account.requiredString("user"),
            domain: try account.requiredString("domain"),
            displayName: try account.string("display_name"),
            passwordFile: try account.string("password_file"),
            listenHost: try account.string("listen_host") ?? "0.0.0.0",
            listenPort: try account.int("listen_port", in: 0...65535) ?? 0
        )
        try account.finish()

        let transport = try root.choice("transport", Transport.self) ?? .tls
        let edgeProxies = try root.strings("edge_proxies") ?? []
        for (index, proxy) in edgeProxies.enumerated() where !Self.looksLikeSIPURI(proxy) {
            throw root.invalid("edge_proxies", "entry \(index + 1) '\(proxy)' is not a sip: or sips: address")
        }
        if edgeProxies.count > 2 {
            throw root.invalid("edge_proxies", "at most two edge proxies (RFC 5626 flows), found \(edgeProxies.count)")
        }
        let caFile = try root.string("ca_file")
        let srtp = try root.choice("srtp", SRTPMode.self) ?? .required
        if transport == .tls && caFile == nil {
            throw root.invalid("ca_file", "required with transport tls: the centrale's CA is pinned")
        }
        if !edgeProxies.isEmpty && parsedAccount.passwordFile == nil {
            throw ConfigError(key: "account.password_file", line: nil, message: "required with edge_proxies: REGISTER needs the digest password")
        }
        if transport == .tls && srtp == .off {
            throw root.invalid("srtp", "must be 'required' when signalling runs over TLS")
        }

        guard var centrale = try root.section("centrale") else {
            throw ConfigError(key: "centrale", line: nil, message: "required but missing")
        }
        guard let postSections = try centrale.sections("posts"), !postSections.isEmpty else {
            throw centrale.invalid("posts", "at least one post is required: the button must lead somewhere")
        }
        var posts: [Post] = []
        for var section in postSections {
            let post = Post(id: try section.requiredString("id"), uri: try section.requiredString("uri"))
            guard Self.looksLikeSIPURI(post.uri) else {
                throw section.invalid("uri", "'\(post.uri)' is not a sip: or sips: address")
            }
            guard !posts.contains(where: { $0.id == post.id }) else {
                throw section.invalid("id", "post id '\(post.id)' is used twice")
            }
            try section.finish()
            posts.append(post)
        }
        var parsedCentrale = Centrale(
            posts: posts,
            policy: try centrale.choice("policy", RingPolicy.self) ?? .ringAll,
            perPostTimeoutSeconds: try centrale.int("per_post_timeout_seconds", in: 3...120) ?? 15,
            deadlineSeconds: try centrale.int("deadline_seconds", in: 10...600) ?? 60,
            reassuranceSeconds: try centrale.int("reassurance_seconds", in: 5...120) ?? 15
        )
        parsedCentrale.callbackURI = try centrale.string("callback_uri")
        parsedCentrale.callbackFallbackURI = try centrale.string("callback_fallback_uri")
        parsedCentrale.callbackEscalateSeconds = try centrale.int("callback_escalate_after_seconds", in: 2...86_400) ?? 120
        for (key, uri) in [("callback_uri", parsedCentrale.callbackURI), ("callback_fallback_uri", parsedCentrale.callbackFallbackURI)] {
            if let uri, !Self.looksLikeSIPURI(uri) {
                throw centrale.invalid(key, "'\(uri)' is not a sip: or sips: address")
            }
        }
        if parsedCentrale.callbackFallbackURI != nil && parsedCentrale.callbackURI == nil {
            throw centrale.invalid("callback_fallback_uri", "needs callback_uri: the fallback is where a request goes when that one does not answer")
        }
        try centrale.finish()

        var button = try root.section("button")
        let parsedButton = Button(
            device: try button?.string("device") ?? "/dev/beeldzorg/button",
            keyCode: try button?.int("key_code", in: 1...767) ?? 28,
            longPressMilliseconds: try button?.int("long_press_ms", in: 500...10_000) ?? 2_000,
            debounceMilliseconds: try button?.int("debounce_ms", in: 0...500) ?? 30
        )
        try button?.finish()

        var camera = try root.section("camera")
        let parsedCamera = Camera(
            device: try camera?.string("device") ?? "/dev/beeldzorg/camera",
            width: try camera?.int("width", in: 160...1920) ?? 640,
            height: try camera?.int("height", in: 120...1080) ?? 480,
            framesPerSecond: try camera?.int("fps", in: 1...60) ?? 25
        )
        if parsedCamera.width % 2 != 0 || parsedCamera.height % 2 != 0 {
            throw ConfigError(key: "camera", line: nil, message: "width and height must be even")
        }
        try camera?.finish()

        var audio = try root.section("audio")
        var parsedAudio = Audio(
            capture: try audio?.string("capture") ?? "default",
            playback: try audio?.string("playback") ?? "default",
            echoCancellation: try audio?.bool("echo_cancellation") ?? true
        )
        parsedAudio.mixer = try audio?.string("mixer")
        for (key, path) in [("playback_mixer", \Audio.playbackMixer), ("capture_mixer", \Audio.captureMixer)] {
            if let name = try audio?.string(key) {
                // `none`: the tablet has no such element (levels left to the hardware).
                parsedAudio[keyPath: path] = name == "none" ? nil : name
            }
        }
        parsedAudio.volumeFloor = try audio?.int("volume_floor", in: 1...100) ?? parsedAudio.volumeFloor
        parsedAudio.volumeCeiling = try audio?.int("volume_ceiling", in: 1...100) ?? parsedAudio.volumeCeiling
        if parsedAudio.volumeCeiling < parsedAudio.volumeFloor, let audio {
            throw audio.invalid("volume_ceiling", "\(parsedAudio.volumeCeiling) is below volume_floor \(parsedAudio.volumeFloor)")
        }
        parsedAudio.volume = try audio?.int("volume", in: 0...100) ?? parsedAudio.volume
        parsedAudio.captureVolume = try audio?.int("capture_volume", in: 0...100) ?? parsedAudio.captureVolume
        try audio?.finish()

        var parsedMedia = Media()
        if var section = try root.section("media") {
            // At least 5 s: RTCP comes every 5 s or so (RFC 3550), and a held call lives on it.
            parsedMedia.livenessTimeoutSeconds = try section.int("liveness_timeout_seconds", in: 5...120)
                ?? parsedMedia.livenessTimeoutSeconds
            if var voice = try section.section("voice") {
                parsedMedia.voice.gainControl = try voice.bool("agc") ?? true
                parsedMedia.voice.noiseSuppression = try voice.bool("noise_suppression") ?? true
                parsedMedia.voice.highPassFilter = try voice.bool("high_pass_filter") ?? true
                try voice.finish()
            }
            try section.finish()
        }

        var parsedSIPTCP = SIPTCP()
        if var section = try root.section("sip_tcp") {
            // Within the 1,024 descriptors systemd gives the daemon (LimitNOFILE), with room
            // for media, devices, the database and the control socket.
            parsedSIPTCP.maxConnections = try section.int("max_connections", in: 1...512) ?? parsedSIPTCP.maxConnections
            parsedSIPTCP.maxConnectionsPerAddress = try section.int("max_connections_per_address", in: 1...512)
                ?? parsedSIPTCP.maxConnectionsPerAddress
            parsedSIPTCP.idleTimeoutSeconds = try section.int("idle_timeout_seconds", in: 1...3600)
                ?? parsedSIPTCP.idleTimeoutSeconds
            parsedSIPTCP.headerTimeoutSeconds = try section.int("header_timeout_seconds", in: 1...60)
                ?? parsedSIPTCP.headerTimeoutSeconds
            try section.finish()
        }

        var parsedProvisioning: Provisioning?
        if var section = try root.section("provisioning") {
            let url = try section.requiredString("url")
            guard Self.looksLikeHTTPSURL(url) else {
                throw section.invalid("url", "'\(url)' is not an https:// address")
            }
            let uploadURL = try section.string("upload_url")
            if let uploadURL, !Self.looksLikeHTTPSURL(uploadURL) {
                throw section.invalid("upload_url", "'\(uploadURL)' is not an https:// address")
            }
            parsedProvisioning = Provisioning(
                url: url,
                tokenFile: try section.requiredString("token_file"),
                caFile: try section.string("ca_file"),
                intervalMinutes: try section.int("interval_minutes", in: 1...1440) ?? 60,
                uploadURL: uploadURL
            )
            parsedProvisioning?.healthIntervalSeconds = try section.int("health_interval_seconds", in: 2...86_400) ?? 300
            if let healthURL = try section.string("health_url") {
                guard Self.looksLikeHTTPSURL(healthURL) else {
                    throw section.invalid("health_url", "'\(healthURL)' is not an https:// address")
                }
                parsedProvisioning?.healthURL = healthURL
            }
            try section.finish()
        }

        var lines: [String: Int] = [:]
        lines["account.password_file"] = account.line(of: "password_file")
        lines["ca_file"] = root.line(of: "ca_file")
        lines["prompts"] = root.line(of: "prompts")
        if let section = try root.section("provisioning") {
            lines["provisioning.token_file"] = section.line(of: "token_file")
            lines["provisioning.ca_file"] = section.line(of: "ca_file")
        }

        var parsedScreen = Screen()
        if var section = try root.section("screen") {
            parsedScreen.device = try section.string("device") ?? parsedScreen.device
            if !["auto", "offscreen", "none"].contains(parsedScreen.device) && !parsedScreen.device.hasPrefix("/") {
                throw section.invalid("device", "'\(parsedScreen.device)' is not auto, offscreen, none or a device path (/dev/dri/card0, /dev/fb0)")
            }
            parsedScreen.dimAfterSeconds = try section.int("dim_after_seconds", in: 0...86_400) ?? parsedScreen.dimAfterSeconds
            parsedScreen.font = try section.string("font") ?? parsedScreen.font
            lines["screen.font"] = section.line(of: "font")
            try section.finish()
        }

        var configuration = Configuration(
            account: parsedAccount,
            transport: transport,
            edgeProxies: edgeProxies,
            caFile: caFile,
            srtp: srtp,
            centrale: parsedCentrale,
            button: parsedButton,
            camera: parsedCamera,
            audio: parsedAudio,
            statusLED: try root.string("status_led"),
            databasePath: try root.string("database") ?? "/var/lib/beeldzorg/beeldzorg.sqlite",
            controlSocket: try root.string("control_socket") ?? "/run/beeldzorg/control.sock",
            language: try root.choice("language", Language.self)?.rawValue ?? "nl",
            promptsDirectory: try root.string("prompts") ?? "/usr/share/beeldzorg/prompts",
            demoCentrale: try root.bool("demo_centrale") ?? false
        )
        configuration.provisioning = parsedProvisioning
        configuration.screen = parsedScreen
        configuration.media = parsedMedia
        configuration.sipTCP = parsedSIPTCP
        configuration.lines = lines
        configuration.controlGroup = try root.string("control_group") ?? configuration.controlGroup
        try root.finish()
        return configuration
    }

    /// Reads and parses a file; a missing or unreadable file, or one over
    /// `maximumFileBytes`, is a `ConfigError` too (the size is checked before anything is read,
    /// and the read itself stops at the limit, so a file growing meanwhile changes nothing).
    public static func load(path: String) throws(ConfigError) -> Configuration {
        let text = try readBounded(path: path)
        do {
            return try parse(text)
        } catch {
            throw ConfigError(key: error.key, line: error.line, message: error.message + " (in \(path))")
        }
    }

    /// The file's text, at most `maximumFileBytes`; anything larger is refused unread.
    static func readBounded(path: String) throws(ConfigError) -> String {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            throw ConfigError(key: "", line: nil, message: "cannot read \(path): \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            throw ConfigError(key: "", line: nil, message: "cannot read \(path): \(String(cString: strerror(errno)))")
        }
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            throw ConfigError(key: "", line: nil, message: "\(path) is not a regular file")
        }
        let limit = maximumFileBytes
        func tooLarge(_ size: Int) -> ConfigError {
            ConfigError(key: "", line: nil, message: "\(path) is \(size) bytes; a configuration file may be at most \(limit) bytes (1 MiB), so it was not read")
        }
        if Int(st.st_size) > limit { throw tooLarge(Int(st.st_size)) }
        var bytes = [UInt8](repeating: 0, count: limit + 1)
        var count = 0
        while count < bytes.count {
            let n = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress! + count, $0.count - count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw ConfigError(key: "", line: nil, message: "cannot read \(path): \(String(cString: strerror(errno)))")
            }
            if n == 0 { break }
            count += n
        }
        if count > limit { throw tooLarge(count) }
        guard let text = String(validating: bytes[0..<count], as: UTF8.self) else {
            throw ConfigError(key: "", line: nil, message: "\(path) is not UTF-8 text")
        }
        return text
    }

    enum Language: String, CaseIterable { case nl }

    private static func looksLikeHTTPSURL(_ text: String) -> Bool {
        guard let url = URL(string: text), url.scheme?.lowercased() == "https", let host = url.host, !host.isEmpty else {
            return false
        }
        return !text.contains(" ")
    }

    private static func looksLikeSIPURI(_ text: String) -> Bool {
        let lower = text.lowercased()
        return (lower.hasPrefix("sip:") || lower.hasPrefix("sips:")) && text.count > 5 && !text.contains(" ")
    }
}
