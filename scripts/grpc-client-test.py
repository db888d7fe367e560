#!/usr/bin/python3
"""A Python gRPC client of the Sluice API, generated from the same protos.

Generates the stubs from control/proto with grpc_tools.protoc into a
temporary directory, then, against a running sluiced: applies Kubernetes
manifests, reads them back, lists with a label selector, checks that a bad
batch is refused with INVALID_ARGUMENT naming the object and field and
changes nothing, makes a dry run, watches from a revision and reads stats.

Needs Debian's python3-grpcio and python3-grpc-tools (scripts/test
installs them). Run by control/tests/python_client.rs:

    /usr/bin/python3 scripts/grpc-client-test.py --api unix:/path/api.sock
"""

import argparse
import json
import os
import shutil
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
PROTOS = ["sluice/v1/objects.proto", "sluice/v1/stats.proto", "sluice/v1/control.proto"]

NAMESPACE = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "py"}}
SERVICE = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {"name": "api", "namespace": "py", "labels": {"app": "api", "tier": "back"}},
    "spec": {
        "type": "ClusterIP",
        "clusterIP": "10.96.7.7",
        "selector": {"app": "api"},
        "ports": [{"name": "grpc", "protocol": "TCP", "port": 9000, "targetPort": 9000}],
    },
}
SLICE = {
    "apiVersion": "discovery.k8s.io/v1",
    "kind": "EndpointSlice",
    "metadata": {
        "name": "api-x1",
        "namespace": "py",
        "labels": {"kubernetes.io/service-name": "api"},
    },
    "addressType": "IPv4",
    "ports": [{"name": "grpc", "protocol": "TCP", "port": 9000}],
    "endpoints": [{"addresses": ["10.244.3.3"], "conditions": {"ready": True}}],
}


def generate(proto_dir, out):
    from grpc_tools import protoc

    args = ["grpc_tools.protoc", "-I" + proto_dir, "--python_out=" + out, "--grpc_python_out=" + out]
    if protoc.main(args + PROTOS) != 0:
        raise SystemExit("grpc_tools.protoc failed on " + proto_dir)
    sys.path.insert(0, out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--api", required=True, help="unix:PATH of a running sluiced")
    ap.add_argument("--proto-dir", default=os.path.join(HERE, "..", "control", "proto"))
    args = ap.parse_args()
    try:
        import grpc  # noqa: F401
        import grpc_tools  # noqa: F401
    except ImportError as e:
        print("missing Python module (%s): install python3-grpcio and python3-grpc-tools "
              "(scripts/test installs them)" % e, file=sys.stderr)
        return 2

    out = tempfile.mkdtemp(prefix="sluice-py-")
    try:
        generate(os.path.abspath(args.proto_dir), out)
        return run(args.api)
    finally:
        shutil.rmtree(out, ignore_errors=True)


def run(api):
    import grpc
    from sluice.v1 import control_pb2, control_pb2_grpc, objects_pb2, stats_pb2

    checks = 0

    def check(cond, what):
        nonlocal checks
        if not cond:
            raise AssertionError(what)
        checks += 1

    def obj(manifest):
        return objects_pb2.Object(json=json.dumps(manifest))

    channel = grpc.insecure_channel(api)
    grpc.channel_ready_future(channel).result(timeout=10)
    stub = control_pb2_grpc.ControlStub(channel)

    v = stub.Version(control_pb2.VersionRequest())
    check(v.api == "sluice.v1", "api version %r" % v.api)
    check(any(k.kind == "EndpointSlice" and k.namespaced for k in v.kinds), "kinds listed")

    start = stub.Health(control_pb2.HealthRequest()).revision

    # Apply real Kubernetes manifests as one batch.
    r = stub.Apply(objects_pb2.ApplyRequest(objects=[obj(NAMESPACE), obj(SERVICE), obj(SLICE)]))
    check(r.revision == start + 1, "revision %d after %d" % (r.revision, start))
    check(r.generation > 0 and not r.dry_run, "published")
    check([(k.kind, k.namespace, k.name) for k in r.keys]
          == [("Namespace", "", "py"), ("Service", "py", "api"), ("EndpointSlice", "py", "api-x1")],
          "keys %r" % list(r.keys))

    # Read it back.
    got = stub.Get(objects_pb2.GetRequest(key=objects_pb2.ObjectKey(kind="Service", namespace="py", name="api")))
    back = json.loads(got.object.json)
    check(back["spec"]["clusterIP"] == "10.96.7.7", "clusterIP read back")
    check(back["spec"]["ports"][0]["port"] == 9000, "port read back")
    check(got.object.revision == r.revision, "object revision")
    try:
        stub.Get(objects_pb2.GetRequest(key=objects_pb2.ObjectKey(kind="Service", namespace="py", name="nope")))
        check(False, "a missing object is found")
    except grpc.RpcError as e:
        check(e.code() == grpc.StatusCode.NOT_FOUND, "NOT_FOUND, got %s" % e.code())

    listed = stub.List(objects_pb2.ListRequest(kind="Service", label_selector="app=api,tier in (back)"))
    check([o.key.name for o in listed.objects] == ["api"], "list by selector")
    check(len(stub.List(objects_pb2.ListRequest(kind="Service", label_selector="tier=front")).objects) == 0,
          "selector excludes")

    # A bad batch is refused whole, saying which object and field.
    bad = json.loads(json.dumps(SERVICE))
    bad["spec"]["ports"][0]["port"] = 70000
    other = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "py-other"}}
    try:
        stub.Apply(objects_pb2.ApplyRequest(objects=[obj(other), obj(bad)]))
        check(False, "a bad batch was accepted")
    except grpc.RpcError as e:
        check(e.code() == grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT, got %s" % e.code())
        check(e.details().startswith("Service py/api: spec.ports[0].port: "), e.details())
        md = dict(e.trailing_metadata() or ())
        check(md.get("sluice-error-field") == "spec.ports[0].port", "field metadata %r" % md)
    health = stub.Health(control_pb2.HealthRequest())
    check(health.revision == r.revision, "the bad batch changed the revision")
    check(len(stub.List(objects_pb2.ListRequest(kind="Namespace", label_selector="kubernetes.io/metadata.name=py-other")).objects) == 0,
          "the good half of a bad batch was not applied")

    # A dry run reports and changes nothing.
    d = stub.Delete(objects_pb2.DeleteRequest(
        keys=[objects_pb2.ObjectKey(kind="EndpointSlice", namespace="py", name="api-x1")], dry_run=True))
    check(d.dry_run and d.revision == r.revision + 1 and d.generation == 0, "dry run %r" % d)
    check(stub.Health(control_pb2.HealthRequest()).revision == r.revision, "dry run changed nothing")

    # Watch from before the batch: its three additions, in order.
    stream = stub.Watch(objects_pb2.WatchRequest(from_revision=start), timeout=10)
    seen = []
    for ev in stream:
        seen.append((ev.revision, objects_pb2.EventType.Name(ev.type), ev.key.kind, ev.key.name))
        if len(seen) == 3:
            stream.cancel()
            break
    check(seen == [(r.revision, "EVENT_TYPE_ADDED", "Namespace", "py"),
                   (r.revision, "EVENT_TYPE_ADDED", "Service", "api"),
                   (r.revision, "EVENT_TYPE_ADDED", "EndpointSlice", "api-x1")], "watch %r" % seen)

    s = stub.GetStats(stats_pb2.GetStatsRequest())
    check(s.dataplane and s.generations.newest >= r.generation, "stats generations")
    check([p.name for p in s.ports] == ["p0", "p1"], "ports %r" % [p.name for p in s.ports])
    check(len(s.workers) == 1, "one worker")

    print("python grpc client: %d checks passed" % checks)
    return 0


if __name__ == "__main__":
    sys.exit(main())
