"""The sharded load's Lambda steps with the events the load state machine sends them (tests/events),
against moto (S3, DynamoDB, Step Functions) and the tiny ONNX model: the plan writes the shard
manifest the map's ItemReader reads, the worker takes a batch as the Distributed Map's ItemBatcher
delivers it, the reduce step reads the map's ResultWriter manifest and publishes with the
conditional CURRENT write, and the loader starts one execution per job."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest
from moodboard.artifacts import CURRENT_KEY, ArtifactStore
from moodboard.errors import BundleError, PublishConflict, ShardFailed
from moodboard.index import ProductIndex
from moodboard.index_versions import IndexVersions
from moodboard.load_jobs import JobStore
from moodboard.runtime import Runtime, set_runtime
from moodboard.settings import Settings
from moodboard.tables import create_tables
from moodboard_local.demo_catalog import generate_demo_catalog

from tests.apigw import LambdaContext, load_event
from tests.catalogs import BUCKET, upload_demo_catalog

PREFIX = "catalogs/spring shop/"
JOB = "0123456789abcdef0123456789abcdef"
SHARD_SIZE = 4


@pytest.fixture
def aws(moto_bucket: Any) -> dict[str, Any]:
    return {"s3": moto_bucket, "dynamodb": boto3.client("dynamodb", region_name="us-east-1"),
            "sfn": boto3.client("stepfunctions", region_name="us-east-1")}


@pytest.fixture
def settings(tmp_path: Path, aws: dict[str, Any], tiny_bundle: Path) -> Iterator[Settings]:
    settings = Settings(artifacts_bucket=BUCKET, cache_dir=tmp_path / "cache", model_dir=str(tiny_bundle),
                        load_shard_size=SHARD_SIZE, fetch_concurrency=2)
    create_tables(aws["dynamodb"], settings)
    set_runtime(Runtime(settings, s3=aws["s3"], dynamodb=aws["dynamodb"]))
    yield settings
    set_runtime(None)


@pytest.fixture
def jobs(aws: dict[str, Any], settings: Settings) -> JobStore:
    return JobStore(aws["dynamodb"], settings.jobs_table)


def handler(step: str) -> Any:
    from importlib import import_module

    return import_module(f"loader.{step}").handler


def upload_catalog(s3: Any, folder: Path, *, extra_rows: list[dict[str, str]] = ()) -> list[str]:
    """A generated catalog (2 types x 3) with its images under PREFIX; returns the product ids."""
    return upload_demo_catalog(s3, BUCKET, PREFIX, folder, extra_rows=extra_rows)


def read(s3: Any, key: str) -> bytes:
    return s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()


def current(s3: Any) -> dict[str, Any] | None:
    try:
        return json.loads(read(s3, CURRENT_KEY))
    except s3.exceptions.NoSuchKey:
        return None


def bundle(s3: Any, version: str, dest: Path) -> ProductIndex:
    return ProductIndex.open(ArtifactStore(BUCKET, s3).download(version, dest))


def planned(aws: dict[str, Any], tmp_path: Path, **upload: Any) -> dict[str, Any]:
    upload_catalog(aws["s3"], tmp_path / "catalog", **upload)
    return handler("plan")(load_event("load_plan.json"), LambdaContext())


def map_results(s3: Any) -> None:
    """The map's results where the ResultWriter puts them: shard 0 failed, shard 1 succeeded."""
    for name in ("manifest.json", "FAILED_0.json", "SUCCEEDED_0.json"):
        key = f"loads/map-results/6dbfba93-bcff-410b-9b5c-abf41ae9eddb/{name}"
        s3.put_object(Bucket=BUCKET, Key=key, Body=json.dumps(load_event(f"load_map_results/{name}")).encode())


def test_plan_writes_the_shard_manifest_the_map_reads(aws: dict[str, Any], settings: Settings, jobs: JobStore,
                                                      tmp_path: Path) -> None:
    ids = upload_catalog(aws["s3"], tmp_path / "catalog")

    plan = handler("plan")(load_event("load_plan.json"), LambdaContext())

    assert plan["skip"] is False and plan["shards"] == 2 and plan["products"] == 6 and plan["reused"] == 0
    assert plan["shards_key"] == f"loads/{JOB}/shards.json"
    manifest = json.loads(read(aws["s3"], plan["shards_key"]))  # what the ItemReader reads: one item per shard
    assert manifest == [{"shard": 0, "products": 4}, {"shard": 1, "products": 2}]
    inputs = [json.loads(line) for shard in (0, 1)
              for line in read(aws["s3"], f"loads/{JOB}/shards/{shard:05d}/input.jsonl").splitlines()]
    assert [item["product"]["id"] for item in inputs] == ids
    assert all(item["s3_key"].startswith(PREFIX + "images/") and item["key"].startswith("s3:images/")
               for item in inputs)
    record = jobs.get(JOB)
    assert (record.status, record.shards_total, record.shards_done) == ("running", 2, 0)
    again = handler("plan")(load_event("load_plan.json"), LambdaContext())
    assert again["version"] == plan["version"]  # planned once: a retried or redriven plan keeps its shards


def test_worker_embeds_a_batch_as_the_distributed_map_delivers_it(aws: dict[str, Any], settings: Settings,
                                                                  jobs: JobStore, tmp_path: Path) -> None:
    planned(aws, tmp_path)
    batch = load_event("load_worker_batch.json")

    result = handler("worker")(batch, LambdaContext())

    assert result["job_id"] == JOB
    assert [{k: s[k] for k in ("shard", "embedded", "failures", "skipped")} for s in result["shards"]] == [
        {"shard": 0, "embedded": 4, "failures": 0, "skipped": False},
        {"shard": 1, "embedded": 2, "failures": 0, "skipped": False}]
    vectors = np.load(io.BytesIO(read(aws["s3"], f"loads/{JOB}/shards/00000/vectors.npy")))
    assert vectors.shape == (4, 64) and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert jobs.get(JOB).shards_done == 2
    written = aws["s3"].head_object(Bucket=BUCKET, Key=f"loads/{JOB}/shards/00000/done.json")["LastModified"]

    retried = handler("worker")(batch, LambdaContext())  # the map retries a batch: finished shards are skipped

    assert [s["skipped"] for s in retried["shards"]] == [True, True]
    assert aws["s3"].head_object(Bucket=BUCKET, Key=f"loads/{JOB}/shards/00000/done.json")["LastModified"] == written
    assert jobs.get(JOB).shards_done == 2


def test_a_failing_shard_fails_its_batch_after_the_others_finish(aws: dict[str, Any], settings: Settings,
                                                                 jobs: JobStore, tmp_path: Path) -> None:
    planned(aws, tmp_path)
    aws["s3"].put_object(Bucket=BUCKET, Key=f"loads/{JOB}/shards/00000/input.jsonl", Body=b"{not json\n")

    with pytest.raises(ShardFailed, match="1 of 2 shards failed; shard 0"):
        handler("worker")(load_event("load_worker_batch.json"), LambdaContext())

    assert "Contents" not in aws["s3"].list_objects_v2(Bucket=BUCKET, Prefix=f"loads/{JOB}/shards/00000/done")
    aws["s3"].head_object(Bucket=BUCKET, Key=f"loads/{JOB}/shards/00001/done.json")
    record = jobs.get(JOB)
    assert record.shards_done == 1 and set(record.shard_failures) == {"0"}
    assert record.shard_failures["0"]["products"] == 4


def test_reduce_reads_the_maps_result_manifest_and_publishes_the_finished_shards(
        aws: dict[str, Any], settings: Settings, jobs: JobStore, tmp_path: Path) -> None:
    planned(aws, tmp_path)
    batch = load_event("load_worker_batch.json")
    batch["Items"] = batch["Items"][1:]  # shard 0 failed on the map (the results say why)
    handler("worker")(batch, LambdaContext())
    map_results(aws["s3"])

    result = handler("reduce")(load_event("load_reduce.json"), LambdaContext())

    assert result["status"] == "succeeded" and result["loaded"] == 2 and result["embedded"] == 2
    assert result["shards"] == {"total": 2, "done": 1, "failed": {"0": {
        "error": "ShardFailed: 1 of 1 shards failed; shard 0: the shard's store timed out", "products": 4}}}
    assert current(aws["s3"])["version"] == result["version"]
    index = bundle(aws["s3"], result["version"], tmp_path / "check")
    shard_1 = [json.loads(line)["product"]["id"]
               for line in read(aws["s3"], f"loads/{JOB}/shards/00001/input.jsonl").splitlines()]
    assert sorted(p.id for p in index.products()) == sorted(shard_1)
    record = jobs.get(JOB)
    assert record.status == "succeeded" and record.shards_done == 1
    assert record.shard_failures["0"]["error"].startswith("ShardFailed: 1 of 1 shards failed")
    assert any(r.get("shard") == 0 for r in record.rejects)


def test_reduce_run_twice_publishes_once(aws: dict[str, Any], settings: Settings, tmp_path: Path) -> None:
    planned(aws, tmp_path)
    handler("worker")(load_event("load_worker_batch.json"), LambdaContext())
    event = {"job_id": JOB, "map": {}}
    first = handler("reduce")(event, LambdaContext())
    etag = aws["s3"].head_object(Bucket=BUCKET, Key=CURRENT_KEY)["ETag"]

    second = handler("reduce")(event, LambdaContext())  # Step Functions retried the reduce task

    assert second["version"] == first["version"] and second["status"] == "succeeded"
    assert aws["s3"].head_object(Bucket=BUCKET, Key=CURRENT_KEY)["ETag"] == etag
    # the version's card names the model by its source (from the plan), never by its hash alone
    [card] = [v for v in IndexVersions(ArtifactStore(BUCKET, aws["s3"])).list().items if v.version == first["version"]]
    assert card.model == f"tiny-random-clip @ {card.model_fingerprint[:6]}"


def test_a_reload_keeps_currents_vectors_and_embeds_nothing(aws: dict[str, Any], settings: Settings,
                                                            tmp_path: Path) -> None:
    planned(aws, tmp_path)
    handler("worker")(load_event("load_worker_batch.json"), LambdaContext())
    first = handler("reduce")({"job_id": JOB, "map": {}}, LambdaContext())

    plan = handler("plan")({"job_id": "second-job", "catalog_key": PREFIX + "catalog.csv"}, LambdaContext())
    second = handler("reduce")({"job_id": "second-job", "map": {}}, LambdaContext())

    assert (plan["shards"], plan["reused"], second["embedded"], second["loaded"]) == (0, 6, 0, 6)
    before = bundle(aws["s3"], first["version"], tmp_path / "a")
    after = bundle(aws["s3"], second["version"], tmp_path / "b")
    for product in before.products():
        assert np.allclose(after.vector(product.id), before.vector(product.id), atol=1e-6)


def test_a_reduce_after_another_load_published_conflicts_and_current_stays(
        aws: dict[str, Any], settings: Settings, jobs: JobStore, tmp_path: Path) -> None:
    planned(aws, tmp_path)
    handler("worker")(load_event("load_worker_batch.json"), LambdaContext())
    handler("plan")({"job_id": "other-job", "catalog_key": PREFIX + "catalog.csv"}, LambdaContext())
    handler("worker")({"Items": [{"shard": 0, "products": 4}, {"shard": 1, "products": 2}],
                       "BatchInput": {"job_id": "other-job"}}, LambdaContext())
    other = handler("reduce")({"job_id": "other-job", "map": {}}, LambdaContext())

    with pytest.raises(PublishConflict):
        handler("reduce")({"job_id": JOB, "map": {}}, LambdaContext())

    assert current(aws["s3"])["version"] == other["version"]


def test_a_failed_step_is_recorded_on_the_job(aws: dict[str, Any], settings: Settings, jobs: JobStore,
                                              tmp_path: Path) -> None:
    planned(aws, tmp_path)
    error = {"Error": "States.ExceedToleratedFailureThreshold",
             "Cause": "The specified tolerated failure threshold was exceeded"}

    result = handler("reduce")({"job_id": JOB, "error": error}, LambdaContext())

    assert result["status"] == "failed"
    record = jobs.get(JOB)
    assert record.status == "failed"
    assert record.error == ("States.ExceedToleratedFailureThreshold: The specified tolerated failure threshold "
                            "was exceeded")
    assert current(aws["s3"]) is None


def test_an_archives_images_are_kept_under_the_job_for_its_workers(aws: dict[str, Any], settings: Settings,
                                                                    tmp_path: Path) -> None:
    catalog = generate_demo_catalog(tmp_path / "catalog", per_category=2, categories=["dress", "lamp"])
    archive = tmp_path / "shop.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(catalog, "catalog.csv")
        for image in (catalog.parent / "images").iterdir():
            zf.write(image, f"images/{image.name}")
    aws["s3"].upload_file(str(archive), BUCKET, "catalogs/shop.zip")

    plan = handler("plan")({"job_id": "zip-job", "catalog_key": "catalogs/shop.zip"}, LambdaContext())
    handler("worker")({"Items": [{"shard": 0, "products": 4}], "BatchInput": {"job_id": "zip-job"}},
                      LambdaContext())
    result = handler("reduce")({"job_id": "zip-job", "map": {}}, LambdaContext())

    assert plan["shards"] == 1 and result["loaded"] == 4 and result["image_failures"] == 0
    listed = aws["s3"].list_objects_v2(Bucket=BUCKET, Prefix="loads/zip-job/files/images/")
    assert len(listed["Contents"]) == 4


def test_the_loader_starts_one_execution_per_job_named_by_the_job_id(aws: dict[str, Any], settings: Settings,
                                                                    jobs: JobStore, tmp_path: Path) -> None:
    machine = aws["sfn"].create_state_machine(
        name="moodboard-load", definition=json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}),
        roleArn="arn:aws:iam::123456789012:role/moodboard-load")["stateMachineArn"]
    set_runtime(Runtime(settings.model_copy(update={"load_state_machine_arn": machine}), s3=aws["s3"],
                        dynamodb=aws["dynamodb"]))
    upload_catalog(aws["s3"], tmp_path / "catalog")
    event = load_event("s3_catalog_created.json")

    (started,) = handler("handler")(event, LambdaContext())["results"]
    (again,) = handler("handler")(event, LambdaContext())["results"]  # S3 delivered the event twice

    # One execution: StartExecution with a running execution's name and input returns that execution
    # (closed, it is refused with ExecutionAlreadyExists, which the loader reports as "already started").
    assert started["status"] == "started" and again["execution_arn"] == started["execution_arn"]
    (execution,) = aws["sfn"].list_executions(stateMachineArn=machine)["executions"]
    assert execution["name"] == started["job_id"] and execution["executionArn"] == started["execution_arn"]
    sent = json.loads(aws["sfn"].describe_execution(executionArn=execution["executionArn"])["input"])
    assert sent == {"job_id": started["job_id"], "catalog_key": PREFIX + "catalog.csv", "bucket": BUCKET}
    assert jobs.get(started["job_id"]).execution_arn == execution["executionArn"]
    assert current(aws["s3"]) is None  # the loader itself loads nothing


def test_a_prefix_catalog_is_planned_from_its_listing(aws: dict[str, Any], settings: Settings,
                                                      tmp_path: Path) -> None:
    upload_catalog(aws["s3"], tmp_path / "catalog")

    plan = handler("plan")({"job_id": "prefix-job", "catalog_key": PREFIX}, LambdaContext())

    assert (plan["shards"], plan["products"]) == (2, 6)


def test_a_prefix_holding_a_key_that_leaves_it_is_refused(aws: dict[str, Any], settings: Settings,
                                                           tmp_path: Path) -> None:
    upload_catalog(aws["s3"], tmp_path / "catalog")
    aws["s3"].put_object(Bucket=BUCKET, Key=PREFIX + "/escape.csv", Body=b"id,title,category,image\n")

    with pytest.raises(BundleError, match="it leaves"):
        handler("plan")({"job_id": "escape-job", "catalog_key": PREFIX}, LambdaContext())

    assert not Path("/escape.csv").exists()
    assert "Contents" not in aws["s3"].list_objects_v2(Bucket=BUCKET, Prefix="loads/escape-job/plan.json")


def _published_once(aws: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
    planned(aws, tmp_path)
    handler("worker")(load_event("load_worker_batch.json"), LambdaContext())
    return handler("reduce")({"job_id": JOB, "map": {}}, LambdaContext())


def test_the_plan_refuses_a_destructive_catalog_unless_the_job_confirms_it(
        aws: dict[str, Any], settings: Settings, jobs: JobStore, tmp_path: Path) -> None:
    from moodboard.errors import LoadNeedsConfirmation

    _published_once(aws, tmp_path)
    before = current(aws["s3"])
    lamps = aws["s3"].get_object(Bucket=BUCKET, Key=PREFIX + "catalog.csv")["Body"].read().decode().splitlines()
    dresses = [line for line in lamps if ",lamp," not in line]
    assert len(dresses) == 4  # the header and 3 dresses: the lamps are gone
    aws["s3"].put_object(Bucket=BUCKET, Key=PREFIX + "catalog.csv", Body="\n".join(dresses).encode() + b"\n")
    jobs.create(PREFIX + "catalog.csv", job_id="unconfirmed")
    jobs.create(PREFIX + "catalog.csv", job_id="confirmed", confirm=True)

    with pytest.raises(LoadNeedsConfirmation, match="the product type 'lamp'"):
        handler("plan")({"job_id": "unconfirmed", "catalog_key": PREFIX + "catalog.csv"}, LambdaContext())
    record = jobs.get("unconfirmed")
    assert record.status == "failed" and record.error.startswith("this load would remove 50% of products (3 of 6)")
    assert aws["s3"].list_objects_v2(Bucket=BUCKET, Prefix="loads/unconfirmed/").get("KeyCount", 0) == 0
    assert current(aws["s3"]) == before

    plan = handler("plan")({"job_id": "confirmed", "catalog_key": PREFIX + "catalog.csv"}, LambdaContext())
    result = handler("reduce")({"job_id": "confirmed", "map": {}}, LambdaContext())
    assert (plan["reused"], result["status"], result["loaded"]) == (3, "succeeded", 3)
    assert current(aws["s3"])["version"] == result["version"]


def test_the_reduce_applies_retention_after_its_publish(aws: dict[str, Any], settings: Settings,
                                                        tmp_path: Path) -> None:
    import time

    from moodboard.index_versions import IndexVersions

    keep = 2
    set_runtime(Runtime(settings.model_copy(update={"index_keep_versions": keep, "index_keep_days": 0}),
                        s3=aws["s3"], dynamodb=aws["dynamodb"]))
    versions = [_published_once(aws, tmp_path)["version"]]
    for n in range(keep + 1):  # reloads: every product reused, no shard to embed
        time.sleep(1.05)  # a version's `created` has second resolution: one second apart, "newest" is clear
        handler("plan")({"job_id": f"reload-{n}", "catalog_key": PREFIX + "catalog.csv"}, LambdaContext())
        versions.append(handler("reduce")({"job_id": f"reload-{n}", "map": {}}, LambdaContext())["version"])

    listed = IndexVersions(ArtifactStore(BUCKET, aws["s3"])).list()
    assert [v.version for v in listed.items] == versions[::-1][:keep]
    assert (listed.current, listed.previous) == (versions[-1], versions[-2])
