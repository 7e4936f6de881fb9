#!/usr/bin/env python3
"""Checks QEMU screendumps (binary PPM, P6) of the tablet's screen in the boot test.

    check-screen.py idle|call FILE.ppm [FILE.png]

idle: 1280x800; the background near 0x10141C; thousands of pure-white pixels in the clock band
(y 150-350); pixels near yellow 0xFFD43B in the button sentence band (y 600-780).
call: the remote region (x 120-1160, y 150-550) is the post's picture: baresip's fake video
(red, green and blue bars), nothing like the idle background and not dark; the self view's
white border near x 973, y 676.
With a third argument the dump is also written as a PNG (zlib only, no other packages).
Prints what it measured; exit status 1 if a check failed.
"""
import struct
import sys
import zlib


def read_ppm(path):
    data = open(path, "rb").read()
    fields, pos = [], 0
    while len(fields) < 4:
        while data[pos:pos + 1].isspace():
            pos += 1
        if data[pos:pos + 1] == b"#":
            pos = data.index(b"\n", pos) + 1
            continue
        end = pos
        while not data[end:end + 1].isspace():
            end += 1
        fields.append(data[pos:end])
        pos = end
    pos += 1
    if fields[0] != b"P6" or int(fields[3]) != 255:
        raise ValueError(f"{path}: not an 8-bit P6 PPM")
    w, h = int(fields[1]), int(fields[2])
    pixels = data[pos:pos + w * h * 3]
    if len(pixels) != w * h * 3:
        raise ValueError(f"{path}: short pixel data")
    return w, h, pixels


def write_png(path, w, h, pixels):
    rows = b"".join(b"\x00" + pixels[y * w * 3:(y + 1) * w * 3] for y in range(h))

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(rows, 6)) + chunk(b"IEND", b""))


def near(p, colour, tol):
    return all(abs(a - b) <= tol for a, b in zip(p, colour))


def main():
    mode, path = sys.argv[1], sys.argv[2]
    w, h, px = read_ppm(path)
    if len(sys.argv) > 3:
        write_png(sys.argv[3], w, h, px)

    def at(x, y):
        i = (y * w + x) * 3
        return px[i], px[i + 1], px[i + 2]

    def region(x0, x1, y0, y1, step=2):
        for y in range(y0, y1, step):
            for x in range(x0, x1, step):
                yield at(x, y)

    failures = []

    def check(ok, what):
        print(f"check-screen {mode}: {'ok' if ok else 'FAIL'}: {what}")
        if not ok:
            failures.append(what)

    check((w, h) == (1280, 800), f"size {w}x{h} (want 1280x800)")
    if (w, h) != (1280, 800):
        return 1
    background = (0x10, 0x14, 0x1C)
    if mode == "idle":
        # Every 2nd pixel of every 2nd row: counts are a quarter of the real ones.
        corners = list(region(0, 100, 0, 100)) + list(region(1180, 1280, 700, 800))
        bg = sum(near(p, background, 8) for p in corners)
        check(bg >= 0.95 * len(corners), f"background near #10141C in the corners: {bg}/{len(corners)}")
        white = sum(p == (255, 255, 255) for p in region(0, w, 150, 350)) * 4
        check(white >= 2000, f"clock band y 150-350: about {white} pure-white pixels (want >= 2000)")
        yellow = sum(near(p, (0xFF, 0xD4, 0x3B), 24) for p in region(0, w, 600, 780)) * 4
        check(yellow >= 500, f"sentence band y 600-780: about {yellow} pixels near #FFD43B (want >= 500)")
    elif mode == "call":
        # baresip's fakevideo (baresip-core 1.0 here) is three bars, red, green and blue,
        # fitted to the full height at x ~107-1172; sampled where the self view is not.
        remote = list(region(120, 1160, 150, 550, 4))
        bg = sum(near(p, background, 8) for p in remote)
        dark = sum(max(p) < 40 for p in remote)
        bars = [sum(p[c] >= 150 and all(p[o] < 100 for o in range(3) if o != c) for p in remote)
                for c in range(3)]
        check(bg == 0 and dark <= 0.02 * len(remote),
              f"remote region x 120-1160 y 150-550 is a picture: {bg}/{len(remote)} pixels like the idle background, {dark} dark")
        check(all(n >= 0.2 * len(remote) for n in bars),
              f"the post's fake video bars there: red {bars[0]}, green {bars[1]}, blue {bars[2]} of {len(remote)} (want >= 20 % each)")
        border = [(x, y) for y in range(660, 693) for x in range(960, 990) if at(x, y) == (255, 255, 255)]
        check(len(border) >= 20, f"self view's white border near x 973, y 676: {len(border)} pure-white pixels in x 960-990, y 660-692")
    else:
        print(f"check-screen: unknown mode {mode}")
        return 2
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
