"""EmF1Metric: SQuAD 1.1 exact match and F1 of generated answers, in percent."""
import logging

from mindspore.train import Metric

from mindformers.core.metric.squad_scoring import best_over_golds, exact_match, token_f1
from mindformers.tools.errors import DataError
from mindformers.tools.register import MindFormerModuleType, MindFormerRegister

logger = logging.getLogger("mindformers")


@MindFormerRegister.register(MindFormerModuleType.METRIC)
class EmF1Metric(Metric):
    """`update(predictions, golds)` per batch: the decoded generated answers and, for each, its gold answer or a
    list of acceptable ones. `eval()` returns {'F1': ..., 'Em': ..., 'total_count': questions}, scores averaged
    over questions and given in percent, as the official SQuAD 1.1 script does.

    The eval loop feeds it generated text (`generates = True`): prompts from squad_data_process.py --mode eval
    rows continued by model.generate and decoded, references decoded from the rows' labels.
    """

    generates = True

    def __init__(self):
        super().__init__()
        self.clear()

    def clear(self):
        self.em_sum = 0.0
        self.f1_sum = 0.0
        self.count = 0

    def update(self, *inputs):
        if len(inputs) != 2:
            raise ValueError(f"EmF1Metric.update expects (predictions, golds), got {len(inputs)} inputs")
        predictions, golds = inputs
        predictions = [predictions] if isinstance(predictions, str) else list(predictions)
        golds = [golds] if isinstance(golds, str) else list(golds)
        if len(predictions) != len(golds):
            raise ValueError(f"EmF1Metric.update: {len(predictions)} predictions for {len(golds)} questions")
        for prediction, answers in zip(predictions, golds):
            self.em_sum += best_over_golds(exact_match, prediction, answers)
            self.f1_sum += best_over_golds(token_f1, prediction, answers)
            self.count += 1

    def eval(self):
        if self.count == 0:
            raise DataError("EmF1Metric: the eval set holds no question (expected squad_data_process.py --mode eval "
                            "rows)")
        result = {"F1": 100.0 * self.f1_sum / self.count, "Em": 100.0 * self.em_sum / self.count,
                  "total_count": self.count}
        logger.info("F1 score: %.1f, Em score: %.1f, total_count: %d", result["F1"], result["Em"], self.count)
        return result
