"""The Open3D geometries of one sequence (a point cloud or an ellipsoid-glyph mesh, plus the node graph) and
how to move them to frame i; shared by the window player and the offscreen renderer."""
from __future__ import annotations

import numpy as np

from .glyphs import GlyphBuilder
from .sequence import LoadedSequence

NODE_RGB = (230, 60, 40)  # node-graph edge colour when the PLY has none


class SceneGeometry:
    """`geom`: an o3d PointCloud, or a TriangleMesh of glyphs when `glyphs` and the sequence has them;
    `lines`: an o3d LineSet of the node graph (None without one). :meth:`set_frame` rewrites their buffers."""

    def __init__(self, o3d, seq: LoadedSequence, glyphs: bool):
        self.o3d, self.seq = o3d, seq
        self.glyphs = glyphs and seq.has_glyphs
        V = o3d.utility.Vector3dVector
        if self.glyphs:
            self.builder = GlyphBuilder(seq.num_points, seq.colors)
            self.geom = o3d.geometry.TriangleMesh()
            self.geom.triangles = o3d.utility.Vector3iVector(self.builder.triangles)
            self.geom.vertex_colors = V(self.builder.vertex_colors)
        else:
            self.geom = o3d.geometry.PointCloud()
            self.geom.colors = V(seq.colors.astype(np.float64))
        self.lines = o3d.geometry.LineSet() if seq.nodes else None
        self.set_frame(0)

    @property
    def kind(self) -> str:
        """How a backend draws :attr:`geom`: "mesh" (glyphs) or "points"."""
        return "mesh" if self.glyphs else "points"

    def set_frame(self, i: int) -> None:
        """Move the geometries to frame i (positions, per-frame colours, glyph shapes, node graph)."""
        V = self.o3d.utility.Vector3dVector
        seq = self.seq
        if self.glyphs:
            v, n = self.builder.vertices_normals(seq.positions[i], seq.quats[i], seq.scales[i])
            self.geom.vertices = V(v)
            self.geom.vertex_normals = V(n)
            if seq.frame_colors is not None:
                self.geom.vertex_colors = V(np.repeat(seq.colors_at(i).astype(np.float64), len(self.builder.unit), 0))
        else:
            self.geom.points = V(seq.positions[i].astype(np.float64))
            if seq.frame_colors is not None:
                self.geom.colors = V(seq.colors_at(i).astype(np.float64))
        if self.lines is not None:
            nd = seq.nodes[i]
            self.lines.points = V(nd["vertices"].astype(np.float64))
            self.lines.lines = self.o3d.utility.Vector2iVector(nd["edges"].astype(np.int32))
            rgb = nd["edge_rgb"] if nd["edge_rgb"] is not None else np.tile([NODE_RGB], (len(nd["edges"]), 1))
            self.lines.colors = V(np.asarray(rgb, np.float64) / 255.0)
