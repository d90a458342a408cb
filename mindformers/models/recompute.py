"""Activation recomputation per decoder layer, as recompute_config asks."""


def layers_to_recompute(num_layers, recompute):
    """recompute: True (all layers), False/None (none), or a list of per-pipeline-stage counts of leading layers."""
    if not recompute:
        return []
    if recompute is True:
        return list(range(num_layers))
    return list(range(min(num_layers, int(sum(recompute)))))


def apply_recompute(layers, recompute_config):
    if not recompute_config:
        return
    for index in layers_to_recompute(len(layers), recompute_config.get("recompute")):
        layers[index].recompute()
