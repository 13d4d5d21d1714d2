"""The transformers `Trainer` a run uses: its arguments, callbacks, evaluation during training, the best step.

* Checkpoints hold the LoRA weights (and style rows) only, never the full embedding.
* Evaluation every `eval_steps` computes eval/loss on the first `eval_max_samples` eval examples and, for
  classification, eval/accuracy, eval/f1, eval/precision, eval/recall from greedy answers to the first
  `evaluation.samples` of them (`classify.py`, the code `evaluate` runs); every evaluation's answers are kept
  in RUN/evals/step-N.json.
* Early stopping (transformers' EarlyStoppingCallback) after `early_stopping_patience` evaluations without a
  new best `metric_for_best_model`; a checkpoint is written at every new best, so `load_best_model_at_end`
  always finds the best step to restore. On resume the best-so-far and the patience count come back from the
  checkpoint's trainer_state.json.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from .recipes import Recipe


def training_arguments(recipe: Recipe, run_dir: Path, epochs: float, evaluates: bool, backend: str | None = None):
    """`backend`: the DDP process group's (remote_payload/distributed.py), None for one process."""
    from transformers import TrainingArguments

    from .distributed import DDP_TIMEOUT_S

    evaluation = {"eval_strategy": "no"}
    if evaluates:
        evaluation = {"eval_strategy": "steps", "eval_steps": recipe.eval_steps,
                      "per_device_eval_batch_size": recipe.evaluation.batch_size, "prediction_loss_only": True,
                      "metric_for_best_model": recipe.metric_for_best_model,
                      "greater_is_better": recipe.greater_is_better,
                      "load_best_model_at_end": recipe.load_best_model_at_end,
                      "restore_callback_states_from_checkpoint": True}
    return TrainingArguments(
        output_dir=str(run_dir / "checkpoints"), seed=recipe.seed, data_seed=recipe.seed,
        per_device_train_batch_size=recipe.per_device_train_batch_size,
        gradient_accumulation_steps=recipe.gradient_accumulation_steps,
        learning_rate=recipe.learning_rate, num_train_epochs=epochs, max_steps=recipe.max_steps,
        lr_scheduler_type=recipe.lr_scheduler_type, warmup_steps=recipe.warmup_ratio,  # < 1: a fraction of steps
        weight_decay=recipe.weight_decay, max_grad_norm=recipe.max_grad_norm, optim=recipe.optim,
        bf16=recipe.bf16, fp16=recipe.compute_dtype == "float16", use_cpu=recipe.device == "cpu",
        activation_checkpointing=recipe.gradient_checkpointing,          # transformers 5's name for it
        activation_checkpointing_kwargs={"use_reentrant": False},
        logging_strategy="steps", logging_steps=recipe.logging_steps, save_strategy="steps",
        save_steps=recipe.save_steps, save_total_limit=recipe.save_total_limit, **evaluation,
        dataloader_num_workers=recipe.dataloader_num_workers,
        dataloader_pin_memory=recipe.dataloader_pin_memory and recipe.device == "cuda",
        remove_unused_columns=False, label_names=["labels"], include_num_input_tokens_seen="non_padding",
        use_liger_kernel=recipe.liger_kernel, report_to=[], disable_tqdm=True,
        # DDP: LoRA leaves no unused parameter; find-unused with reentrant checkpointing fails ("mark a variable
        # ready only once"), hence use_reentrant False above
        ddp_find_unused_parameters=False, ddp_backend=backend, ddp_timeout=int(DDP_TIMEOUT_S))


class SaveOnNewBest(TrainerCallback):
    """Ask for a checkpoint at every evaluation that beats the best metric so far (before the Trainer records
    it), so the best step can always be restored, whatever save_steps is."""

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        key = args.metric_for_best_model
        value = (metrics or {}).get(key if key.startswith("eval_") else f"eval_{key}")
        if value is None:
            return
        best = state.best_metric
        if best is None or (value > best if args.greater_is_better else value < best):
            control.should_save = True


def _adapter_trainer_class():
    import torch
    from transformers import Trainer

    class AdapterTrainer(Trainer):
        task_metrics = None         # callable(model, step) -> {"accuracy": ..., ...}, set by make_trainer

        def _save(self, output_dir=None, state_dict=None):
            output_dir = output_dir or self.args.output_dir
            Path(output_dir).mkdir(parents=True, exist_ok=True)
            self.model.save_pretrained(output_dir, save_embedding_layers=False)
            self.processing_class.save_pretrained(output_dir)
            torch.save(self.args, Path(output_dir) / "training_args.bin")

        def evaluation_loop(self, dataloader, description, prediction_loss_only=None, ignore_keys=None,
                            metric_key_prefix="eval"):
            output = super().evaluation_loop(dataloader, description, prediction_loss_only=True,
                                             ignore_keys=ignore_keys, metric_key_prefix=metric_key_prefix)
            if self.task_metrics is not None:
                extra = self.task_metrics(self.model, self.state.global_step)
                output.metrics.update({f"{metric_key_prefix}_{k}": v for k, v in extra.items()})
            return output

    return AdapterTrainer


def classification_metrics(tokenizer, recipe: Recipe, examples: list, run_dir: Path, main: bool = True):
    """The task_metrics hook of a classification run: greedy answers -> scores, answers kept per step."""
    from .classify import answer_examples, summarize

    chosen = examples[: recipe.evaluation.samples]

    def measure(model, step: int) -> dict[str, Any]:
        was_training = model.training
        model.eval()
        answers = answer_examples(model, tokenizer, recipe, chosen)
        model.train(was_training)
        metrics = summarize(recipe, answers)
        if not main:     # every DDP rank scores (early stopping must agree); rank 0 keeps the answers
            return {k: metrics[k] for k in ("accuracy", "f1", "precision", "recall", "unparseable", "choice_accuracy")}
        out = run_dir / "evals" / f"step-{step}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"step": step, "metrics": metrics, "answers": answers}, indent=1) + "\n")
        return {k: metrics[k] for k in ("accuracy", "f1", "precision", "recall", "unparseable", "choice_accuracy")}

    return measure


def make_trainer(model, tokenizer, args, data, run_dir: Path, recipe: Recipe, samples_per_step: float,
                 attempt: int = 1, main: bool = True, extra_callbacks=()):
    """`main`: rank 0 of a DDP run (or the one process): it alone writes metrics.jsonl and tensorboard/."""
    from torch.utils.tensorboard import SummaryWriter
    from transformers import EarlyStoppingCallback, PrinterCallback
    from transformers.integrations import TensorBoardCallback

    from .metrics import MetricsJsonl

    callbacks = list(extra_callbacks)
    if main:
        callbacks += [MetricsJsonl(run_dir / "metrics.jsonl", samples_per_step, attempt=attempt),
                      TensorBoardCallback(SummaryWriter(log_dir=str(run_dir / "tensorboard")))]
    evaluates = args.eval_strategy != "no"
    if evaluates:
        callbacks.append(SaveOnNewBest())
        if recipe.early_stopping_patience:
            callbacks.append(EarlyStoppingCallback(early_stopping_patience=recipe.early_stopping_patience))
    trainer = _adapter_trainer_class()(model=model, args=args, train_dataset=data.train_dataset,
                                       eval_dataset=data.eval_dataset if evaluates else None,
                                       data_collator=data.collator, processing_class=tokenizer, callbacks=callbacks)
    if evaluates and recipe.task == "classification":
        trainer.task_metrics = classification_metrics(tokenizer, recipe, data.eval_examples, run_dir, main)
    trainer.remove_callback(PrinterCallback)  # MetricsJsonl prints one compact line per logging step instead
    return trainer


def best_record(trainer, recipe: Recipe) -> dict[str, Any] | None:
    """run.json "best": the evaluation that won, for `orch status` and for reading back which adapter this is."""
    state = trainer.state
    if state.best_global_step is None or state.best_metric is None:
        return None
    evals = [e for e in state.log_history if "eval_loss" in e and e.get("step") == state.best_global_step]
    checkpoint = state.best_model_checkpoint
    return {"step": state.best_global_step, "metric": recipe.metric_for_best_model, "value": state.best_metric,
            "checkpoint": Path(checkpoint).name if checkpoint else None,
            "restored": bool(recipe.load_best_model_at_end and checkpoint),
            "metrics": {k[5:]: v for k, v in (evals[-1] if evals else {}).items() if k.startswith("eval_")}}
