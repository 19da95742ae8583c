"""The wire contract of ``mem.v1.MemService`` for Python code outside ``mem_serving`` (better: the
typed ``mem_serving.client``): ``pb``, the messages and enums, and ``MemServiceStub``. The
generated ``mem_serving._gen`` stays private to this package.
"""

from __future__ import annotations

from mem_serving._gen.mem.v1 import mem_pb2 as pb
from mem_serving._gen.mem.v1.mem_pb2_grpc import MemServiceStub

#: The full service name, as health checks and reflection know it.
SERVICE_NAME: str = pb.DESCRIPTOR.services_by_name["MemService"].full_name

__all__ = ["SERVICE_NAME", "MemServiceStub", "pb"]
