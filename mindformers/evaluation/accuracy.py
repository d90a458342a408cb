"""Accuracy tables: overall, per group (subject or task) and per category, counted over questions."""


def tally(flags):
    flags = list(flags)
    correct = sum(1 for flag in flags if flag)
    return {"accuracy": correct / len(flags) if flags else None, "correct": correct, "total": len(flags)}


def accuracy_tables(records, group_name, categories=None, category_of=None):
    """{"accuracy", "correct", "total", <group_name>: {group: tally}, "categories": {category: tally}}.

    records: dicts with "group" and "correct". Category scores count every question of the category's groups
    (MMLU's reference evaluation does the same), so a large subject weighs more than a small one; categories
    without questions are left out; groups that belong to no category count only in the overall score."""
    by_group = {}
    for record in records:
        by_group.setdefault(record["group"], []).append(record["correct"])
    table = tally(record["correct"] for record in records)
    table[group_name] = {group: tally(flags) for group, flags in sorted(by_group.items())}
    if category_of is not None:
        by_category = {}
        for group, flags in by_group.items():
            if group in category_of:
                by_category.setdefault(category_of[group], []).extend(flags)
        table["categories"] = {category: tally(by_category[category]) for category in categories
                               if category in by_category}
    return table
