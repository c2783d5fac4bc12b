"""Rotation, rigid-motion and nearest-neighbour math (pure torch functions)."""
