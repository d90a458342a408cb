"""MMLU (Hendrycks et al.): 57 subjects of four-way multiple choice, 5-shot from each subject's dev split.

Layout (hendrycks/test and cais/mmlu): data/dev/<subject>_dev.csv and data/test/<subject>_test.csv, headerless rows
question,A,B,C,D,answer. --eval_data_path may name the root, its data/ folder, or the test folder itself (as
ModelLink's scripts do); dev/ is looked up beside test/.
"""
from mindformers.evaluation.subject_exams import SubjectExam

DEFAULT_MAX_NEW_TOKENS = 1
CATEGORIES = ("STEM", "humanities", "social sciences", "other")  # other: business, health, misc.

# The four groups of lm-eval's mmlu task, by subject: the MMLU paper's categories, except that lm-eval counts
# anatomy in STEM (the paper's categories.py has it under health, in "other").
_SUBJECTS_BY_CATEGORY = {
    "STEM": """abstract_algebra anatomy astronomy college_biology college_chemistry college_computer_science
        college_mathematics college_physics computer_security conceptual_physics electrical_engineering
        elementary_mathematics high_school_biology high_school_chemistry high_school_computer_science
        high_school_mathematics high_school_physics high_school_statistics machine_learning""",
    "humanities": """formal_logic high_school_european_history high_school_us_history high_school_world_history
        international_law jurisprudence logical_fallacies moral_disputes moral_scenarios philosophy prehistory
        professional_law world_religions""",
    "social sciences": """econometrics high_school_geography high_school_government_and_politics
        high_school_macroeconomics high_school_microeconomics high_school_psychology human_sexuality
        professional_psychology public_relations security_studies sociology us_foreign_policy""",
    "other": """business_ethics clinical_knowledge college_medicine global_facts human_aging management
        marketing medical_genetics miscellaneous nutrition professional_accounting professional_medicine virology""",
}
CATEGORY_OF = {subject: category for category, names in _SUBJECTS_BY_CATEGORY.items() for subject in names.split()}


LAYOUT = ("data/test/<subject>_test.csv with headerless rows question,A,B,C,D,answer (and "
          "data/dev/<subject>_dev.csv for the 5 shots), or the test folder itself")
EXAM = SubjectExam(task="MMLU", split="test", layout=LAYOUT, has_header_row=False, subject_names={},
                   header="The following are multiple choice questions (with answers) about {subject}.\n\n",
                   cue="\nAnswer:", categories=CATEGORIES, category_of=CATEGORY_OF,
                   reports_acc_norm=False)

load_questions = EXAM.questions
evaluate = EXAM.evaluate
