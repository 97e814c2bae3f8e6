"""Devices and processes: the mesh, shardings and multi-process start-up."""
