"""Synthetic indoor scenes with exact per-pixel depth, ray-cast in numpy: the embedded default
depth dataset (no download needed).

A pinhole camera (known intrinsics, random height and downward pitch) looks into a box-shaped
room: floor, ceiling, back and side walls, and 3-7 objects (spheres, yawed boxes, vertical
cylinders) of random size, colour and texture standing on the floor. Depth cues are the ones of
real images: perspective (the floor's checkerboard shrinks with distance, objects' size and
height in the image), occlusion (nearest hit wins), and Lambertian shading with cast shadows.
Depth is the camera-frame z of the hit point (as in NYU/KITTI), exact up to float32.
"""
from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class Camera:
    """Pinhole intrinsics in pixels; image is ``width`` x ``height``."""

    width: int = 128
    height: int = 96
    fx: float = 110.0
    fy: float = 110.0
    cx: float = 64.0
    cy: float = 48.0

    def matrix(self) -> list:
        return [[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]]


def _camera_rays(cam: Camera, pitch: float) -> np.ndarray:
    """(H*W, 3) world directions (x right, y down, z forward) of the pixel centres, scaled so
    that their camera-frame z is 1: a hit at ray parameter t has depth exactly t."""
    v, u = np.mgrid[0 : cam.height, 0 : cam.width].astype(np.float64) + 0.5
    d = np.stack([(u - cam.cx) / cam.fx, (v - cam.cy) / cam.fy, np.ones_like(u)], -1)
    c, s = np.cos(pitch), np.sin(pitch)
    # camera pitched down by `pitch`: rotate about the x axis
    rot = np.array([[1, 0, 0], [0, c, s], [0, -s, c]])
    return d.reshape(-1, 3) @ rot.T


def _plane(o, d, normal, offset):
    """t of rays o + t d hitting the plane normal . p = offset (inf if parallel/behind)."""
    denom = d @ normal
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (offset - o @ normal) / denom
    return np.where(t > 1e-6, t, np.inf)


def _sphere(o, d, centre, radius):
    oc = o - centre
    a, b, c = (d * d).sum(1), 2 * (d * oc).sum(1), (oc * oc).sum(1) - radius**2
    disc = b * b - 4 * a * c
    t = (-b - np.sqrt(np.maximum(disc, 0))) / (2 * a)
    t = np.where((disc >= 0) & (t > 1e-6), t, np.inf)
    p = o + t[:, None] * d
    return t, (p - centre) / radius


def _box(o, d, centre, half, yaw):
    """Slab test in the box's frame (rotated by ``yaw`` about the vertical axis)."""
    c, s = np.cos(yaw), np.sin(yaw)
    rot = np.array([[c, 0, -s], [0, 1, 0], [s, 0, c]])  # world -> box frame
    lo_, ld = (o - centre) @ rot.T, d @ rot.T
    with np.errstate(divide="ignore", invalid="ignore"):
        t1, t2 = (-half - lo_) / ld, (half - lo_) / ld
    tmin, tmax = np.minimum(t1, t2), np.maximum(t1, t2)
    tmin = np.nan_to_num(tmin, nan=-np.inf)
    tmax = np.nan_to_num(tmax, nan=np.inf)
    near, far = tmin.max(1), tmax.min(1)
    t = np.where((near <= far) & (near > 1e-6), near, np.inf)
    axis = tmin.argmax(1)
    n_local = np.zeros_like(ld)
    n_local[np.arange(len(ld)), axis] = -np.sign(ld[np.arange(len(ld)), axis])
    return t, n_local @ rot


def _cylinder(o, d, base, radius, height):
    """Vertical cylinder standing on y = base[1] (floor), axis through (base[0], base[2]),
    extending up (-y) by ``height``, with a top cap."""
    ox, oz = o[:, 0] - base[0], o[:, 2] - base[2]
    a = d[:, 0] ** 2 + d[:, 2] ** 2
    b = 2 * (ox * d[:, 0] + oz * d[:, 2])
    c = ox**2 + oz**2 - radius**2
    disc = b * b - 4 * a * c
    with np.errstate(divide="ignore", invalid="ignore"):
        t_side = (-b - np.sqrt(np.maximum(disc, 0))) / (2 * a)
    y = o[:, 1] + t_side * d[:, 1]
    ok = (disc >= 0) & (t_side > 1e-6) & (y <= base[1]) & (y >= base[1] - height)
    t_side = np.where(ok, t_side, np.inf)
    t_cap = _plane(o, d, np.array([0.0, 1.0, 0.0]), base[1] - height)
    pc = o + np.where(np.isfinite(t_cap), t_cap, 0)[:, None] * d
    t_cap = np.where((pc[:, 0] - base[0]) ** 2 + (pc[:, 2] - base[2]) ** 2 <= radius**2, t_cap,
                     np.inf)
    p = o + np.where(np.isfinite(t_side), t_side, 0)[:, None] * d
    n_side = np.stack([p[:, 0] - base[0], np.zeros(len(p)), p[:, 2] - base[2]], 1) / radius
    n_cap = np.tile([0.0, -1.0, 0.0], (len(p), 1))
    use_cap = t_cap < t_side
    return np.minimum(t_side, t_cap), np.where(use_cap[:, None], n_cap, n_side)


# ---------------------------------------------------------------------------------------------
# Scenes: a room (5 planes) and objects, each with an albedo texture.
_UP = np.array([0.0, -1.0, 0.0])  # y points down


def _colour(rng, lo=0.15, hi=0.95):
    return rng.uniform(lo, hi, 3)


def _texture(rng, uv_axes, pale=False):
    """A surface look: pattern ("solid", "checker", "stripes"), two colours, tile size (m)."""
    c1 = _colour(rng, 0.45, 0.95) if pale else _colour(rng)
    return dict(pattern=rng.choice(["solid", "checker", "stripes"]), c1=c1,
                c2=c1 * rng.uniform(0.4, 0.8), tile=rng.uniform(0.15, 0.6), axes=uv_axes)


def sample_scene(rng: np.random.Generator) -> dict:
    """Random room, camera pose, light and 3-7 objects on the floor (units: metres)."""
    cam_h = rng.uniform(1.1, 1.8)  # floor is the plane y = cam_h
    room_h = rng.uniform(2.5, 3.2)
    left, right, back = rng.uniform(1.5, 3.5), rng.uniform(1.5, 3.5), rng.uniform(4.5, 8.5)
    floor = dict(kind="plane", normal=_UP.copy(), offset=-cam_h, tex=_texture(rng, (0, 2)))
    floor["tex"]["pattern"] = "checker"  # a regular floor texture: the strongest perspective cue
    planes = [
        floor,
        dict(kind="plane", normal=-_UP, offset=cam_h - room_h,  # ceiling, above (-y)
             tex=_texture(rng, (0, 2), True)),
        dict(kind="plane", normal=np.array([0.0, 0, -1]), offset=-back,
             tex=_texture(rng, (0, 1), True)),
        dict(kind="plane", normal=np.array([1.0, 0, 0]), offset=-left,
             tex=_texture(rng, (2, 1), True)),
        dict(kind="plane", normal=np.array([-1.0, 0, 0]), offset=-right,
             tex=_texture(rng, (2, 1), True)),
    ]
    objects = []
    for _ in range(rng.integers(3, 8)):
        x, z = rng.uniform(-left + 0.4, right - 0.4), rng.uniform(1.2, back - 0.5)
        kind = rng.choice(["sphere", "box", "cylinder"])
        size = rng.uniform(0.15, 0.6)
        tex = _texture(rng, (0, 1))
        if kind == "sphere":
            obj = dict(kind=kind, centre=np.array([x, cam_h - size, z]), radius=size)
        elif kind == "box":
            half = np.array([size, rng.uniform(0.15, 0.9), rng.uniform(0.15, 0.6)])
            obj = dict(kind=kind, centre=np.array([x, cam_h - half[1], z]), half=half,
                       yaw=rng.uniform(0, np.pi))
        else:
            obj = dict(kind=kind, base=np.array([x, cam_h, z]), radius=size,
                       height=rng.uniform(0.3, 1.9))
        objects.append(dict(obj, tex=tex))
    light = np.array([rng.uniform(-left, right) * 0.6, cam_h - room_h + 0.3,
                      rng.uniform(1.0, back - 1.0)])
    return dict(pitch=np.deg2rad(rng.uniform(2, 16)), planes=planes, objects=objects,
                light=light, ambient=rng.uniform(0.25, 0.4))


def _intersect(obj, o, d):
    """(t, normal) of rays (o, d) with one primitive; t = inf where missed."""
    if obj["kind"] == "plane":
        return _plane(o, d, obj["normal"], obj["offset"]), np.broadcast_to(obj["normal"], d.shape)
    if obj["kind"] == "sphere":
        return _sphere(o, d, obj["centre"], obj["radius"])
    if obj["kind"] == "box":
        return _box(o, d, obj["centre"], obj["half"], obj["yaw"])
    return _cylinder(o, d, obj["base"], obj["radius"], obj["height"])


def _albedo(tex, points):
    a, b = points[:, tex["axes"][0]] / tex["tile"], points[:, tex["axes"][1]] / tex["tile"]
    if tex["pattern"] == "checker":
        pick = (np.floor(a) + np.floor(b)) % 2 == 0
    elif tex["pattern"] == "stripes":
        pick = np.floor(b) % 2 == 0
    else:
        pick = np.ones(len(points), dtype=bool)
    return np.where(pick[:, None], tex["c1"], tex["c2"])


def _shadowed(points, light, objects):
    """True where the segment from a surface point to the light hits an object."""
    to_light = light - points
    dist = np.linalg.norm(to_light, axis=1)
    d = to_light / dist[:, None]
    o = points + 1e-4 * d
    blocked = np.zeros(len(points), dtype=bool)
    for obj in objects:
        t, _ = _intersect(obj, o, d)
        blocked |= t < dist
    return blocked


def render_scene(scene: dict, cam: Camera, rng: np.random.Generator | None = None):
    """Ray-cast ``scene``: (rgb uint8 (H, W, 3), depth float32 (H, W) metres, camera z)."""
    d = _camera_rays(cam, scene["pitch"])
    o = np.zeros_like(d)
    prims = scene["planes"] + scene["objects"]
    hits = [_intersect(p, o, d) for p in prims]
    ts = np.stack([t for t, _ in hits])
    which = ts.argmin(0)
    t = ts[which, np.arange(len(d))]
    if not np.isfinite(t).all():
        raise RuntimeError("a camera ray left the room; the scene sampler is inconsistent")
    points = t[:, None] * d
    normals = np.zeros_like(d)
    albedo = np.zeros_like(d)
    for k, (prim, (_, n)) in enumerate(zip(prims, hits)):
        sel = which == k
        normals[sel] = n[sel]
        albedo[sel] = _albedo(prim["tex"], points[sel])
    normals *= -np.sign((normals * d).sum(1, keepdims=True) + 1e-12)  # face the camera
    to_light = scene["light"] - points
    dist = np.linalg.norm(to_light, axis=1)
    lambert = np.clip((normals * to_light).sum(1) / dist, 0, None) / (1 + 0.02 * dist**2)
    lambert[_shadowed(points, scene["light"], scene["objects"])] = 0.0
    shade = scene["ambient"] + (1 - scene["ambient"]) * 1.3 * lambert
    rgb = albedo * shade[:, None]
    if rng is not None:
        rgb = rgb + rng.normal(0, 0.01, rgb.shape)
    rgb = (np.clip(rgb, 0, 1) * 255).round().astype(np.uint8).reshape(cam.height, cam.width, 3)
    return rgb, t.astype(np.float32).reshape(cam.height, cam.width)
