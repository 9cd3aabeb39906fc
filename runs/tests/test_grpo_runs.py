"""A real tiny GRPO run through the worker: eval-set prompts, weighted rewards, reward charts and samples."""

from __future__ import annotations

import json

import pytest

from runs.charts import metric_panels
from runs.choices import RunStatus
from runs.execution import execute_run
from runs.models import RunMetric
from runs.tests.eval_support import item, make_eval_set
from runs.tests.run_support import log_text, make_run, output

pytestmark = pytest.mark.django_db(transaction=True)

WEIGHTS = {"correctness": 1.0, "format": 0.5, "length": 0.25}


def test_a_grpo_run_on_an_eval_sets_prompts_records_its_rewards_charts_and_samples(dataset, page):
    make_eval_set(
        "sums", [item(n, prompt=f"What is {n} + {n + 1}?", expected_answer=str(2 * n + 1)) for n in range(1, 5)]
    )
    run = make_run(
        dataset,
        objective="grpo",
        prompt_eval_set="sums",
        rewards=WEIGHTS,
        max_steps=2,
        batch_size=2,
        num_generations=2,
        max_tokens_to_generate=8,
        checkpoint_every_steps=2,
    )

    assert execute_run(run.pk) == RunStatus.COMPLETED, log_text(run)[-3000:]
    run.refresh_from_db()

    job = json.loads((output(run) / "job.json").read_text())
    assert job["rewards"] == WEIGHTS
    names = set(RunMetric.objects.filter(run=run).values_list("name", flat=True))
    wanted = {"reward_mean", "reward_min", "reward_max", "reward_correctness", "reward_format", "reward_length"}
    assert wanted | {"kl", "completion_length_mean"} <= names
    panels = {p.key: {s.metric for s in p.series} for p in metric_panels([run])}
    assert panels["grpo-reward"] == {"reward_mean", "reward_min", "reward_max"}
    assert panels["grpo-reward-functions"] == {"reward_correctness", "reward_format", "reward_length"}
    assert "kl" in panels["grpo-kl"]
    assert "completion_length_mean" in panels["grpo-completion-length"]

    samples = run.summary["grpo_samples"]
    assert samples and run.summary["grpo_samples_step"] == 2
    prompts = {f"What is {n} + {n + 1}?": str(2 * n + 1) for n in range(1, 5)}
    for sample in samples:
        assert prompts[sample["prompt"]] == sample["answer"]  # the eval set's items were the prompts
        assert set(sample["rewards"]) == set(WEIGHTS)
        weighted = sum(WEIGHTS[name] * score for name, score in sample["rewards"].items())
        assert sample["reward"] == pytest.approx(weighted, abs=1e-3)

    html = page.get(f"/runs/{run.pk}/").content.decode()
    assert 'id="grpo-samples"' in html and "Sampled completions (step 2)" in html
    assert "reward (weighted)" in html and "expected <strong>" in html
    assert 'id="chart-data-grpo-reward"' in html and 'id="chart-data-grpo-reward-functions"' in html
    assert "Grpo samples" not in html  # shown as completions, not dumped into the summary table
