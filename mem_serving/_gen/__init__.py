"""Generated protobuf/gRPC code for proto/mem/v1 (do not edit; run scripts/gen_proto.sh).

Import as ``from mem_serving._gen.mem.v1 import mem_pb2, mem_pb2_grpc``.
"""
