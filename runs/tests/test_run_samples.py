"""The sampled answers a finished run shows: generated with the trained model, whatever the prompts' length."""

from __future__ import annotations

from types import SimpleNamespace

from runs.training import child, modeling


def test_samples_of_prompts_longer_than_the_sequence_length_are_generated_from_their_end():
    # A shared dataset's long prompt made every SFT run on it fail at its very end:
    # "Total sampling steps 320 must be less than the cache size 192".
    from tunix.generate import sampler as sampler_lib

    loaded = modeling.build_base({"kind": "preset", "name": "tiny"}, 0)
    job = SimpleNamespace(
        max_seq_length=128,
        chat_template="gemma",
        sample_prompts=["This is a very long prompt. " * 12 + "How many words?", "What is 2 + 2?"],
    )

    samples = child._samples(sampler_lib, loaded.model, loaded.config, loaded.tokenizer, job)

    assert [s["prompt"] for s in samples] == job.sample_prompts
    assert all(isinstance(s["output"], str) for s in samples)


def test_the_run_summary_shows_no_raw_device_report(page, user):
    from runs.tests.run_support import build_arithmetic_dataset, finished_run

    run = finished_run(build_arithmetic_dataset("devices", count=4), created_by=user)
    devices = {"platform": "cpu", "count": 1, "devices": [{"kind": "cpu", "memory_bytes": 2**34}], "jax": "0.10.2"}
    run.summary = {**run.summary, "devices": devices}
    run.save(update_fields=["summary"])

    body = page.get(f"/runs/{run.pk}/").content.decode()

    assert "{&#x27;platform&#x27;" not in body and "{'platform'" not in body
    assert "<th>Devices used</th><td>CPU" in body  # the configuration says it in words
