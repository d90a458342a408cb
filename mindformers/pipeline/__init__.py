"""pipeline(task, model=..., tokenizer=...): a ready-to-call inference object, built from the registry."""
from mindformers.pipeline.text_generation import TextGenerationPipeline
from mindformers.tools.register import MindFormerModuleType, MindFormerRegister


def pipeline(task, model=None, tokenizer=None, **kwargs):
    """The pipeline registered for `task` (e.g. "text_generation"); kwargs go to it (generate options)."""
    cls = MindFormerRegister.get_cls(MindFormerModuleType.PIPELINE, task, where="pipeline")
    return cls(model=model, tokenizer=tokenizer, **kwargs)
