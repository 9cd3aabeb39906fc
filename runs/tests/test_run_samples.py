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
