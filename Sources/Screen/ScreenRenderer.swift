import Foundation

/// Draws a `ScreenModel` into an image of any size. Layout scales with the panel height
/// (designed at 1280×800): the clock is a third of the screen tall, sentences at least
/// 44 px, white or yellow on near-black — readable from across a room by someone with poor
/// sight. Only the in-call screen has video; every other screen is text and calm shapes.
public struct ScreenRenderer: Sendable {
    public let font: FontRenderer

    public init(font: FontRenderer) {
        self.font = font
    }

    public func render(_ model: ScreenModel, width: Int, height: Int) -> ScreenImage {
        var image = ScreenImage(width: width, height: height, fill: Colour.background)
        render(model, into: &image)
        return image
    }

    public func render(_ model: ScreenModel, into image: inout ScreenImage) {
        let s = Double(image.height) / 800
        func px(_ v: Double) -> Int { max(1, Int((v * s).rounded())) }
        let margin = px(60)
        let textWidth = image.width - 2 * margin
        switch model {
        case .idle(let clock, let date, let sentence, let note, let missed, let dimmed):
            image.fill(Rect(x: 0, y: 0, width: image.width, height: image.height), with: Colour.background)
            // From the bottom up: the button's sentence, the callback note, the missed calls;
            // then the clock takes the largest size that still leaves room above them.
            var bottom = image.height - px(70)
            bottom = centredUpwards(sentence, size: px(50), bottom: bottom, colour: Colour.accent, in: &image, maxWidth: textWidth)
            if let note {
                bottom = centredUpwards(note, size: px(44), bottom: bottom - px(30), colour: Colour.text, in: &image, maxWidth: textWidth)
            }
            if !missed.isEmpty {
                bottom -= px(30)
                for line in missed.reversed() {
                    bottom = centredUpwards(line, size: px(42), bottom: bottom, colour: Colour.text, in: &image, maxWidth: textWidth)
                }
            }
            let dateHeight = textHeight(date, size: px(56), maxWidth: textWidth)
            // The full-size clock starts 110 px down; a smaller one moves up to 60 px.
            let layouts = [(240.0, 110.0), (200, 60), (160, 60), (120, 60)].map { (size: px($0.0), top: px($0.1)) }
            let clockLayout = layouts.first { layout in
                layout.top + textHeight(clock, size: layout.size, maxWidth: textWidth) + px(10) + dateHeight + px(20) <= bottom
            } ?? layouts[layouts.count - 1]
            let y = centred(clock, size: clockLayout.size, y: clockLayout.top, colour: Colour.text, in: &image, maxWidth: textWidth)
            _ = centred(date, size: px(56), y: y + px(10), colour: Colour.secondaryText, in: &image, maxWidth: textWidth)
            if dimmed { image.dim(toPercent: 30) }

        case .calling(let headline, let detail, let step):
            image.fill(Rect(x: 0, y: 0, width: image.width, height: image.height), with: Colour.background)
            var y = px(140)
            y = centred(headline, size: px(72), y: y, colour: Colour.text, in: &image, maxWidth: textWidth)
            if let detail {
                _ = centred(detail, size: px(50), y: y + px(24), colour: Colour.secondaryText, in: &image, maxWidth: textWidth)
            }
            // Three dots that brighten one after another, slowly: something is happening,
            // nothing flashes.
            let centreY = Double(image.height) * 0.72
            let spacing = 90 * s
            for dot in 0..<3 {
                let phase = (Double(step) / Double(ScreenModel.animationSteps) - Double(dot) / 3) * 2 * Double.pi
                let brightness = 0.35 + 0.65 * (0.5 + 0.5 * cos(phase))
                let colour = Colour.blend(Colour.calm, over: Colour.background, alpha: UInt32(brightness * 255))
                image.fillCircle(centreX: Double(image.width) / 2 + Double(dot - 1) * spacing, centreY: centreY,
                                 radius: 24 * s, colour: colour)
            }

        case .incoming(let name, let sentence, let countdown, let photo):
            image.fill(Rect(x: 0, y: 0, width: image.width, height: image.height), with: Colour.background)
            var top = px(70)
            if let photo {
                let box = Rect(x: (image.width - px(300)) / 2, y: top, width: px(300), height: px(300))
                let fitted = box.fitting(contentWidth: photo.width, contentHeight: photo.height)
                image.fill(Rect(x: fitted.x - px(4), y: fitted.y - px(4), width: fitted.width + 2 * px(4),
                                height: fitted.height + 2 * px(4)), with: Colour.text)
                image.draw(Self.scaled(photo, to: fitted.width, fitted.height), atX: fitted.x, y: fitted.y)
                top = box.y + box.height + px(30)
            } else {
                top = px(150)
            }
            top = centred(name, size: px(photo == nil ? 120 : 90), y: top, colour: Colour.text, in: &image, maxWidth: textWidth)
            top = centred(sentence, size: px(48), y: top + px(20), colour: Colour.secondaryText, in: &image, maxWidth: textWidth)
            if let countdown {
                _ = centredUpwards(countdown, size: px(52), bottom: image.height - px(50), colour: Colour.accent, in: &image,
                                   maxWidth: textWidth)
            }

        case .inCall(let label, let remote, let selfView):
            image.fill(Rect(x: 0, y: 0, width: image.width, height: image.height), with: Colour.black)
            let full = Rect(x: 0, y: 0, width: image.width, height: image.height)
            if let remote {
                I420Converter.draw(remote, into: &image, rect: full.fitting(contentWidth: remote.width, contentHeight: remote.height))
            } else if let label {
                // Connected, no picture yet (or the other side sends none).
                _ = centred(label, size: px(64), y: image.height / 2 - px(40), colour: Colour.text, in: &image, maxWidth: textWidth)
            }
            if let selfView {
                let width = image.width * 22 / 100
                let height = width * selfView.height / selfView.width
                let border = px(3)
                let rect = Rect(x: image.width - width - px(24), y: image.height - height - px(24), width: width, height: height)
                image.fill(Rect(x: rect.x - border, y: rect.y - border, width: rect.width + 2 * border,
                                height: rect.height + 2 * border), with: Colour.selfViewBorder)
                I420Converter.draw(selfView, into: &image, rect: rect)
            }
            if let label, remote != nil {
                let mask = font.render(label, pixelSize: px(36))
                let pad = px(12)
                image.fill(Rect(x: px(24), y: px(24), width: mask.width + 2 * pad, height: mask.height + 2 * pad), with: Colour.black)
                image.draw(mask, atX: px(24) + pad, y: px(24) + pad, colour: Colour.text)
            }

        case .notice(let kind, let headline, let next):
            let background: UInt32
            switch kind {
            case .ended, .noNetwork: background = Colour.background
            case .unreachable, .connectionLost: background = Colour.warningBackground
            case .fault, .needsService: background = Colour.faultBackground
            }
            image.fill(Rect(x: 0, y: 0, width: image.width, height: image.height), with: background)
            var y = px(180)
            y = centred(headline, size: px(64), y: y, colour: Colour.text, in: &image, maxWidth: textWidth)
            if let next {
                _ = centred(next, size: px(48), y: y + px(50), colour: Colour.accent, in: &image, maxWidth: textWidth)
            }
        }
    }

    /// How tall `text` is once wrapped, as `centred` would draw it.
    private func textHeight(_ text: String, size: Int, maxWidth: Int) -> Int {
        font.wrap(text, pixelSize: size, maxWidth: maxWidth).reduce(0) { $0 + font.render($1, pixelSize: size).height }
    }

    /// Draws wrapped, centred lines starting at `y`; returns the y below the last line.
    private func centred(_ text: String, size: Int, y: Int, colour: UInt32, in image: inout ScreenImage, maxWidth: Int) -> Int {
        var y = y
        for line in font.wrap(text, pixelSize: size, maxWidth: maxWidth) {
            let mask = font.render(line, pixelSize: size)
            image.draw(mask, atX: (image.width - mask.width) / 2, y: y, colour: colour)
            y += mask.height
        }
        return y
    }

    /// Draws wrapped, centred lines ending at `bottom`; returns the y above the first line.
    private func centredUpwards(_ text: String, size: Int, bottom: Int, colour: UInt32, in image: inout ScreenImage,
                                maxWidth: Int) -> Int {
        let lines = font.wrap(text, pixelSize: size, maxWidth: maxWidth).map { font.render($0, pixelSize: size) }
        let top = bottom - lines.reduce(0) { $0 + $1.height }
        var y = top
        for mask in lines {
            image.draw(mask, atX: (image.width - mask.width) / 2, y: y, colour: colour)
            y += mask.height
        }
        return top
    }

    /// Nearest-neighbour resize for the contact photo (small, drawn once per ring).
    static func scaled(_ image: ScreenImage, to width: Int, _ height: Int) -> ScreenImage {
        guard width > 0, height > 0 else { return ScreenImage(width: 1, height: 1) }
        var out = ScreenImage(width: width, height: height)
        for y in 0..<height {
            let sy = min(image.height - 1, y * image.height / height)
            for x in 0..<width {
                out[x, y] = image[min(image.width - 1, x * image.width / width), sy]
            }
        }
        return out
    }
}
