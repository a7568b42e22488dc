"""Draw the small sample frames used by the chronoedit-sim demo and tests.

Everything here is procedural (numpy + PIL + cv2, no randomness), so the
frames contain no third-party content and regenerate byte-for-byte the same.

    python examples/draw_frames.py [OUT_DIR]   # default: examples/frames
"""
import sys
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFilter

W, H = 320, 192

# --- driving: a pinhole camera 1.5 m above a flat road, looking straight ahead.
HORIZON, CX, FOCAL, CAM_H = 80, W / 2, 200.0, 1.5
Z_NEAR = FOCAL * CAM_H / (H - HORIZON)  # depth of the bottom image row


def project(x, y, z):
    """World (x right, y up, z forward, metres) -> pixel coordinates."""
    return (CX + FOCAL * x / z, HORIZON + FOCAL * (CAM_H - y) / z)


def ground_quad(x0, x1, z0, z1):
    """Pixel polygon of a flat strip on the road between depths z0 < z1."""
    z0 = max(z0, Z_NEAR * 0.9)  # clip just below the screen so nothing blows up
    return [project(x0, 0, z0), project(x1, 0, z0), project(x1, 0, z1), project(x0, 0, z1)]


def vertical_gradient(top, bottom, height):
    """(height, W, 3) image blending linearly from colour `top` to `bottom`."""
    t = np.linspace(0.0, 1.0, height)[:, None, None]
    col = (1 - t) * np.array(top, float) + t * np.array(bottom, float)
    return np.repeat(col, W, axis=1).astype(np.uint8)


def draw_road(t):
    """Dashcam frame at time t (seconds); the ego car drives at 15 m/s."""
    travelled = 15.0 * t  # the world slides towards the camera by this much
    img = np.zeros((H, W, 3), np.uint8)
    img[:HORIZON] = vertical_gradient((70, 130, 200), (190, 215, 235), HORIZON)
    img[HORIZON:] = vertical_gradient((120, 135, 110), (95, 120, 80), H - HORIZON)  # verges
    im = Image.fromarray(img)
    d = ImageDraw.Draw(im)

    # Distant hills sit on the horizon so it does not look like a flat cut.
    d.polygon([(0, HORIZON), (0, 70), (60, 62), (120, 72), (190, 64), (260, 70),
               (320, 60), (W, HORIZON)], fill=(120, 150, 150))

    far = 400.0
    d.polygon(ground_quad(-6.5, -3.6, 0, far), fill=(175, 172, 165))   # left sidewalk
    d.polygon(ground_quad(3.6, 6.5, 0, far), fill=(175, 172, 165))     # right sidewalk
    d.polygon(ground_quad(-3.6, 3.6, 0, far), fill=(78, 80, 84))       # asphalt
    for x in (-3.5, 3.4):                                               # solid edge lines
        d.polygon(ground_quad(x, x + 0.12, 0, far), fill=(235, 235, 230))
    # Dashed centre line: 3 m dash every 9 m, anchored to the world so it
    # slides towards the camera as the car moves.
    start = -(travelled % 9.0)
    for k in range(40):
        z0 = start + 9.0 * k
        if z0 + 3.0 > Z_NEAR * 0.9:
            d.polygon(ground_quad(-0.07, 0.07, z0, z0 + 3.0), fill=(240, 210, 60))

    # Roadside props, drawn far-to-near (painter's algorithm).
    props = []
    palette = [(170, 120, 100), (200, 190, 160), (140, 150, 170), (190, 160, 120)]
    for i in range(8):
        z = 12.0 + 14.0 * i - travelled
        side = -1 if i % 2 == 0 else 1
        props.append((z, "building", side, 7 + 3 * (i % 3), palette[i % 4]))
        props.append((z + 7.0, "tree", -side, 0, None))
    for z, kind, side, height, colour in sorted(props, reverse=True):
        if z < Z_NEAR:
            continue
        if kind == "building":
            x = 8.0 * side
            # Side facade: a vertical quad along the road, so it narrows with depth.
            face = [project(x, 0, z), project(x, 0, z + 10), project(x, height, z + 10),
                    project(x, height, z)]
            d.polygon(face, fill=colour, outline=(60, 55, 50))
            for wy in range(2, height - 1, 3):         # rows of windows
                for wz in (z + 2, z + 5.5):
                    d.polygon([project(x, wy, wz), project(x, wy, wz + 2),
                               project(x, wy + 1.5, wz + 2), project(x, wy + 1.5, wz)],
                              fill=(90, 110, 140))
        else:
            x = 5.5 * side
            bx, by = project(x, 0, z)
            tx, ty = project(x, 2.2, z)
            r = FOCAL * 1.4 / z
            d.line([(bx, by), (tx, ty)], fill=(100, 70, 40), width=max(1, int(FOCAL * 0.25 / z)))
            d.ellipse([tx - r, ty - r * 1.3, tx + r, ty + r * 0.4], fill=(50, 120, 50))

    # Lead car in the right lane, slower than us, so it gets closer over time.
    z = 10.0 - 8.0 * t
    cx = CX + FOCAL * 1.75 / z
    w, hgt = FOCAL * 1.8 / z, FOCAL * 1.45 / z
    bottom = HORIZON + FOCAL * CAM_H / z
    l, r = cx - w / 2, cx + w / 2
    d.ellipse([l - 2, bottom - 3, r + 2, bottom + 3], fill=(40, 40, 42))              # shadow
    d.rectangle([l + w * 0.08, bottom - hgt * 0.15, l + w * 0.25, bottom], fill=(20, 20, 20))
    d.rectangle([r - w * 0.25, bottom - hgt * 0.15, r - w * 0.08, bottom], fill=(20, 20, 20))
    d.rounded_rectangle([l, bottom - hgt * 0.65, r, bottom - hgt * 0.1], radius=3,
                        fill=(180, 30, 35))                                            # body
    d.polygon([(l + w * 0.12, bottom - hgt * 0.65), (l + w * 0.22, bottom - hgt),
               (r - w * 0.22, bottom - hgt), (r - w * 0.12, bottom - hgt * 0.65)],
              fill=(160, 25, 30))                                                      # cabin
    d.polygon([(l + w * 0.18, bottom - hgt * 0.68), (l + w * 0.25, bottom - hgt * 0.95),
               (r - w * 0.25, bottom - hgt * 0.95), (r - w * 0.18, bottom - hgt * 0.68)],
              fill=(60, 75, 95))                                                       # rear window
    for x0 in (l + w * 0.04, r - w * 0.18):                                           # tail lights
        d.rectangle([x0, bottom - hgt * 0.5, x0 + w * 0.14, bottom - hgt * 0.4], fill=(255, 60, 40))
    d.rectangle([cx - w * 0.12, bottom - hgt * 0.3, cx + w * 0.12, bottom - hgt * 0.2],
                fill=(230, 230, 220))                                                  # plate
    return im


# --- robotics: a fixed camera looking down at a table at roughly 45 degrees.
# Table corners in pixels: far-left, far-right, near-right, near-left.
TABLE = np.float32([[40, 38], [280, 38], [350, 192], [-30, 192]])


def wood_texture(w=400, h=300):
    """Flat wood planks: fine, gently wavy grain lines (deterministic sines)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    plank = xx // 80                                    # 5 planks, each its own tone
    wobble = 2.5 * np.sin(yy / 40.0 + plank * 1.7) + 1.0 * np.sin(yy / 11.0)
    grain = np.sin((xx + wobble) * 0.9) * 0.5 + np.sin((xx + wobble) / 9.0 + plank) * 0.5
    shade = 0.9 + 0.06 * grain + 0.04 * np.sin(plank * 2.3)
    shade[(xx % 80) < 2] = 0.65                         # dark seams between planks
    base = np.array([175, 122, 76], np.float32)
    tex = base[None, None, :] * shade[..., None]
    return np.clip(tex, 0, 255).astype(np.uint8)


def draw_tabletop(gripper_drop):
    """Workspace frame; gripper_drop (pixels) lowers the gripper towards the cube."""
    img = np.zeros((H, W, 3), np.uint8)
    img[:] = vertical_gradient((200, 205, 210), (150, 155, 160), H)  # back wall
    tex = wood_texture()
    th, tw = tex.shape[:2]
    # Warp flat wood onto the table trapezoid so the grain converges with depth.
    M = cv2.getPerspectiveTransform(np.float32([[0, 0], [tw, 0], [tw, th], [0, th]]), TABLE)
    warped = cv2.warpPerspective(tex, M, (W, H))
    mask = cv2.warpPerspective(np.full((th, tw), 255, np.uint8), M, (W, H))
    img[mask > 127] = warped[mask > 127]
    cv2.line(img, (40, 38), (280, 38), (110, 75, 45), 2)  # table's far edge

    # Soft shadows: paint dark blobs on a mask, blur, and darken the table.
    gy = 18 + gripper_drop
    sh = Image.new("L", (W, H), 0)
    sd = ImageDraw.Draw(sh)
    sd.polygon([(138, 150), (182, 150), (196, 134), (160, 130)], fill=150)  # cube
    sd.ellipse([222, 120, 268, 136], fill=150)                              # cylinder
    sd.ellipse([52, 148, 120, 166], fill=130)                               # bowl
    # The gripper shadow darkens as the gripper descends towards the table.
    sd.rectangle([150, 70 + gripper_drop, 182, 80 + gripper_drop], fill=60 + gripper_drop)
    sh = np.asarray(sh.filter(ImageFilter.GaussianBlur(5)), np.float32) / 255.0
    img = (img * (1 - 0.55 * sh[..., None])).astype(np.uint8)

    im = Image.fromarray(img)
    d = ImageDraw.Draw(im)
    # Red cube: top, front and right faces shaded differently to read as 3D.
    d.polygon([(130, 108), (164, 108), (176, 98), (142, 98)], fill=(235, 80, 70))   # top
    d.polygon([(130, 108), (164, 108), (164, 142), (130, 142)], fill=(190, 35, 30))  # front
    d.polygon([(164, 108), (176, 98), (176, 131), (164, 142)], fill=(140, 20, 20))   # side
    # Blue cylinder: body rectangle between two ellipses.
    d.ellipse([220, 118, 256, 132], fill=(25, 55, 140))
    d.rectangle([220, 80, 256, 125], fill=(40, 80, 180))
    d.rectangle([242, 80, 256, 125], fill=(30, 62, 150))                 # shaded side
    d.ellipse([220, 73, 256, 87], fill=(110, 150, 230), outline=(30, 62, 150))
    # Green bowl: outer body, rim, and a darker inside.
    d.chord([50, 94, 118, 162], 0, 180, fill=(40, 130, 60))
    d.ellipse([50, 118, 118, 138], fill=(70, 170, 90))
    d.ellipse([56, 121, 112, 135], fill=(25, 90, 40))

    # Two-finger gripper coming down from above the image.
    grey, dark = (150, 152, 158), (95, 97, 103)
    d.rectangle([144, 0, 176, gy], fill=grey, outline=dark)              # wrist
    d.rounded_rectangle([124, gy, 196, gy + 14], radius=3, fill=(120, 122, 128), outline=dark)
    for fx in (128, 182):                                                # fingers
        d.rectangle([fx, gy + 14, fx + 10, gy + 44], fill=grey, outline=dark)
        d.rectangle([fx + 2, gy + 36, fx + 8, gy + 44], fill=(60, 60, 64))  # rubber pads
    d.ellipse([154, gy + 3, 166, gy + 11], fill=(230, 160, 40))          # status LED
    return im


def main(out_dir=None):
    out = Path(out_dir) if out_dir else Path(__file__).resolve().parent / "frames"
    # Consecutive pairs: 0.1 s apart on the road, gripper 30 px lower on the table.
    frames = {"driving/road_day_000.png": draw_road(0.0),
              "driving/road_day_001.png": draw_road(0.1),
              "robotics/tabletop_000.png": draw_tabletop(0),
              "robotics/tabletop_001.png": draw_tabletop(30)}
    for rel, im in frames.items():
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        im.save(path, optimize=True)
        print(f"{path} ({path.stat().st_size} bytes)")
    return out


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
