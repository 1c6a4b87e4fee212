"""Training progress as people read it: a labelled bar, and one line per logging step."""

from transformers.trainer_callback import ProgressCallback


class ReadableProgressCallback(ProgressCallback):
    """transformers' training bar, labelled `desc`, with each log as one line instead of a dict."""

    def __init__(self, desc: str):
        super().__init__()
        self.desc = desc

    def on_train_begin(self, args, state, control, **kwargs):
        super().on_train_begin(args, state, control, **kwargs)
        if self.training_bar is not None:
            self.training_bar.set_description(self.desc)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and self.training_bar is not None:
            shown = "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                              for k, v in (logs or {}).items() if k not in ("total_flos", "epoch"))
            self.training_bar.write(f"{self.desc} step {state.global_step}/{state.max_steps}: {shown}")
