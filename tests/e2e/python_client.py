#!/usr/bin/python3
"""A registry client that is not part of this repository's C++ code: Python's grpcio with
stubs generated from proto/ at test time. Pushes, lists, aliases and downloads against a
running modelfleet-server and exits non-zero (with a message) on any mismatch.

usage: python_client.py --proto-dir DIR --address HOST:PORT --token SECRET
"""
import argparse
import hashlib
import os
import subprocess
import sys
import tempfile


def fail(message):
    print("FAIL: " + message, file=sys.stderr)
    sys.exit(1)


def bad_request_field(error):
    """The first field violation of the google.rpc.BadRequest detail in the error's
    grpc-status-details-bin trailer, decoded by protobuf itself. Debian ships no googleapis
    Python protos, so the two message types are declared here from their published schema."""
    from google.protobuf import any_pb2, descriptor_pb2, descriptor_pool, message_factory
    f = descriptor_pb2.FileDescriptorProto(name="rpc_status_test.proto", package="google.rpc",
                                           syntax="proto3", dependency=["google/protobuf/any.proto"])
    T = descriptor_pb2.FieldDescriptorProto
    status = f.message_type.add(name="Status")
    status.field.add(name="code", number=1, type=T.TYPE_INT32, label=T.LABEL_OPTIONAL)
    status.field.add(name="message", number=2, type=T.TYPE_STRING, label=T.LABEL_OPTIONAL)
    status.field.add(name="details", number=3, type=T.TYPE_MESSAGE, label=T.LABEL_REPEATED,
                     type_name=".google.protobuf.Any")
    bad = f.message_type.add(name="BadRequest")
    violation = bad.nested_type.add(name="FieldViolation")
    violation.field.add(name="field", number=1, type=T.TYPE_STRING, label=T.LABEL_OPTIONAL)
    violation.field.add(name="description", number=2, type=T.TYPE_STRING, label=T.LABEL_OPTIONAL)
    bad.field.add(name="field_violations", number=1, type=T.TYPE_MESSAGE, label=T.LABEL_REPEATED,
                  type_name=".google.rpc.BadRequest.FieldViolation")
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(any_pb2.DESCRIPTOR.serialized_pb)
    pool.Add(f)
    factory = message_factory.MessageFactory(pool)
    Status = factory.GetPrototype(pool.FindMessageTypeByName("google.rpc.Status"))
    BadRequest = factory.GetPrototype(pool.FindMessageTypeByName("google.rpc.BadRequest"))
    details = dict(error.trailing_metadata() or ()).get("grpc-status-details-bin")
    if not details:
        return None
    decoded = Status.FromString(details)
    if decoded.code != error.code().value[0]:
        fail("grpc-status-details-bin code %d != the call's %s" % (decoded.code, error.code()))
    for any_detail in decoded.details:
        if any_detail.type_url == "type.googleapis.com/google.rpc.BadRequest":
            violations = BadRequest.FromString(any_detail.value).field_violations
            return violations[0] if violations else None
    return None


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--proto-dir", required=True)
    parser.add_argument("--address", required=True)
    parser.add_argument("--token", required=True)
    args = parser.parse_args()

    out = tempfile.mkdtemp(prefix="modelfleet-py-")
    protos = [os.path.join(args.proto_dir, "modelfleet", "v1", f)
              for f in ("model.proto", "registry.proto", "admin.proto", "fleet.proto")]
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I", args.proto_dir,
                    "--python_out=" + out, "--grpc_python_out=" + out] + protos, check=True)
    sys.path.insert(0, out)
    import grpc
    from modelfleet.v1 import model_pb2, registry_pb2, registry_pb2_grpc

    channel = grpc.insecure_channel(args.address)
    stub = registry_pb2_grpc.RegistryServiceStub(channel)
    auth = [("authorization", "Bearer " + args.token)]

    stub.CreateModel(registry_pb2.CreateModelRequest(model=model_pb2.Model(
        name="py-mat", task="person-detection",
        class_labels=["empty", "sitting", "lying_full", "lying_partial"])), metadata=auth)

    artifacts = {}
    for i, version in enumerate(["1.0.0", "1.1.0", "2.0.0-rc.1"]):
        data = os.urandom(3 * 1024 * 1024 + i)
        artifacts[version] = data
        manifest = model_pb2.Manifest(
            model="py-mat", version=version, format="torchscript-int8",
            quantization="ptq-static-qnnpack", digest=hashlib.sha256(data).hexdigest(),
            size_bytes=len(data), metrics={"accuracy": 0.85 + 0.05 * i},
            labels={"hw": "rev3" if i else "rev2"},
            lineage=model_pb2.Lineage(git_commit="abc123", ci_run_id=str(100 + i)))

        def messages(manifest=manifest, data=data):
            yield registry_pb2.PushVersionRequest(manifest=manifest)
            for off in range(0, len(data), 1 << 20):
                yield registry_pb2.PushVersionRequest(chunk=data[off:off + (1 << 20)])

        pushed = stub.PushVersion(messages(), metadata=auth)
        if pushed.state != model_pb2.VERSION_STATE_READY:
            fail("pushed version %s is not READY" % version)

    listed = stub.ListVersions(registry_pb2.ListVersionsRequest(
        model="py-mat", filter='metrics.accuracy >= 0.9 AND labels.hw = "rev3"'), metadata=auth)
    got = sorted(v.manifest.version for v in listed.versions)
    if got != ["1.1.0", "2.0.0-rc.1"]:
        fail("filtered listing returned %s" % got)

    # Pages of one, newest first, each version exactly once.
    seen, token = [], ""
    while True:
        page = stub.ListVersions(registry_pb2.ListVersionsRequest(
            model="py-mat", page_size=1, page_token=token), metadata=auth)
        seen += [v.manifest.version for v in page.versions]
        token = page.next_page_token
        if not token:
            break
    if seen != ["2.0.0-rc.1", "1.1.0", "1.0.0"]:
        fail("paginated listing returned %s" % seen)

    stub.SetAlias(registry_pb2.SetAliasRequest(model="py-mat", alias="production", version="1.1.0",
                                               reason="python client"), metadata=auth)
    resolved = stub.ResolveAlias(registry_pb2.ResolveAliasRequest(model="py-mat", alias="production"),
                                 metadata=auth)
    if resolved.manifest.version != "1.1.0":
        fail("production resolved to %s" % resolved.manifest.version)
    history = stub.ListAliasHistory(registry_pb2.ListAliasHistoryRequest(model="py-mat"), metadata=auth)
    if len(history.changes) != 1 or history.changes[0].to_version != "1.1.0":
        fail("unexpected alias history %s" % history)

    data = artifacts["1.1.0"]
    received = b""
    for chunk in stub.Download(registry_pb2.DownloadRequest(
            ref=registry_pb2.VersionRef(model="py-mat", alias="production")), metadata=auth):
        received += chunk.data
    if hashlib.sha256(received).hexdigest() != hashlib.sha256(data).hexdigest():
        fail("downloaded bytes do not match")
    offset = 1234567
    tail = b"".join(c.data for c in stub.Download(registry_pb2.DownloadRequest(
        ref=registry_pb2.VersionRef(model="py-mat", version="1.1.0"), offset=offset), metadata=auth))
    if data[:offset] + tail != data:
        fail("resumed download does not complete the artifact")

    try:
        stub.ListVersions(registry_pb2.ListVersionsRequest(model="py-mat", filter="metrics.accuracy ~ 1"),
                          metadata=auth)
        fail("a bad filter was accepted")
    except grpc.RpcError as e:
        if e.code() != grpc.StatusCode.INVALID_ARGUMENT or "filter" not in e.details():
            fail("bad filter gave %s %s" % (e.code(), e.details()))
        violation = bad_request_field(e)
        if violation is None or violation.field != "filter" or not violation.description:
            fail("bad filter's error has no google.rpc.BadRequest detail naming 'filter': %s" % (violation,))

    print("python client: pushed 3, listed, aliased, downloaded (whole and resumed), "
          "decoded a BadRequest detail: OK")


if __name__ == "__main__":
    main()
