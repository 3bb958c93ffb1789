#!/usr/bin/env python3
"""Lists and describes a satlab server's services through gRPC server
reflection (grpc.reflection.v1alpha) — no local copy of satlab's .proto files
and no satlab.v1 stubs are used: the descriptors come from the server, and a
ListNetworks call is made with message classes built from them.

Usage: reflection_demo.py [--server HOST:PORT] [--service NAME]
"""

import argparse
import os
import pathlib
import sys

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool

try:  # protobuf >= 4.21
    from google.protobuf.message_factory import GetMessageClass
except ImportError:  # pragma: no cover
    from google.protobuf import message_factory

    def GetMessageClass(desc):
        return message_factory.MessageFactory(desc.file.pool).GetPrototype(desc)

try:
    import satlab  # noqa: F401  (the installed package: pip install client/python)
except ImportError:  # a checkout: client/python after generate.py
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
from satlab._std import reflection_pb2, reflection_pb2_grpc  # noqa: E402


class Reflector:
    """A client of one server's reflection service."""

    def __init__(self, channel):
        self._stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        self.pool = descriptor_pool.DescriptorPool()  # private: not the default pool
        self._files = {}  # name -> FileDescriptorProto

    def _ask(self, **kwargs):
        req = reflection_pb2.ServerReflectionRequest(**kwargs)
        (resp,) = list(self._stub.ServerReflectionInfo(iter([req]), timeout=10))
        if resp.HasField("error_response"):
            e = resp.error_response
            raise RuntimeError(f"reflection: {kwargs}: code {e.error_code}: {e.error_message}")
        return resp

    def list_services(self):
        return [s.name for s in self._ask(list_services="").list_services_response.service]

    def _load(self, resp):
        for raw in resp.file_descriptor_response.file_descriptor_proto:
            fd = descriptor_pb2.FileDescriptorProto.FromString(raw)
            self._files.setdefault(fd.name, fd)

    def _add(self, name):
        """Adds a file to the pool after its dependencies (fetched if missing)."""
        try:
            self.pool.FindFileByName(name)
            return
        except KeyError:
            pass
        if name not in self._files:
            self._load(self._ask(file_by_filename=name))
        fd = self._files[name]
        for dep in fd.dependency:
            self._add(dep)
        self.pool.Add(fd)

    def service(self, full_name):
        resp = self._ask(file_containing_symbol=full_name)
        self._load(resp)
        first = descriptor_pb2.FileDescriptorProto.FromString(
            resp.file_descriptor_response.file_descriptor_proto[0])
        self._add(first.name)
        return self.pool.FindServiceByName(full_name)


def describe(service):
    print(f"service {service.full_name}  (file {service.file.name})")
    for m in service.methods:
        cs = "stream " if m.client_streaming else ""
        ss = "stream " if m.server_streaming else ""
        print(f"  rpc {m.name}({cs}{m.input_type.full_name}) returns ({ss}{m.output_type.full_name})")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--server", default=os.environ.get("SATLAB_SERVER", "127.0.0.1:50051"))
    ap.add_argument("--service", default="satlab.v1.TrainingService")
    args = ap.parse_args(argv)

    with grpc.insecure_channel(args.server) as channel:
        r = Reflector(channel)
        services = r.list_services()
        print("services:")
        for s in services:
            print(f"  {s}")
        if args.service not in services:
            print(f"reflection_demo: {args.service} not listed", file=sys.stderr)
            return 1
        service = r.service(args.service)
        describe(service)
        req_desc = service.methods_by_name["CreateNetwork"].input_type
        print(f"message {req_desc.full_name} {{")
        type_names = {v: k[len("TYPE_"):].lower()
                      for k, v in descriptor_pb2.FieldDescriptorProto.Type.items()}
        for f in req_desc.fields:
            if f.message_type:
                kind = f.message_type.full_name
            elif f.enum_type:
                kind = f.enum_type.full_name
            else:
                kind = type_names[f.type]
            print(f"  {kind} {f.name} = {f.number};")
        print("}")

        # A call built only from the reflected descriptors.
        method = service.methods_by_name["ListNetworks"]
        request_cls = GetMessageClass(method.input_type)
        response_cls = GetMessageClass(method.output_type)
        call = channel.unary_unary(f"/{service.full_name}/{method.name}",
                                   request_serializer=request_cls.SerializeToString,
                                   response_deserializer=response_cls.FromString)
        reply = call(request_cls(page_size=10), timeout=10)
        names = [n.name for n in reply.networks]
        print(f"ListNetworks via reflected descriptors: {len(names)} network(s) {names}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
