"""Cell contents of each stage notebook (used by tools/nbgen.py)."""
from nbgen import code, header, md, params_cell


def pretrain():
    return header("00_pretrain", "00 · The embedded world and the small CLIP",
                  "Generates the offline world (five downstream tasks and an image-caption corpus) and "
                  "pretrains the profile's small open_clip CLIP on it with open_clip's contrastive loss. "
                  "Produces `build/<profile>/world/` and `build/<profile>/models/pretrained.safetensors` "
                  "(+ `.json` with the loss curve and held-out retrieval R@1). On the `paper` profile the "
                  "model is OpenAI's ViT-B/32 and this stage only checks that the data is in place.") + [
        params_cell('''
profile = "smoke"
seed = 0
epochs = 2
batch_size = 128
lr = 1.0e-3
weight_decay = 0.1
warmup_steps = 20
holdout = 300
'''),
        code('''
from lib import stages, plots
from lib.data import source_for
cfg = stages.setup(profile, seed)
hp = dict(epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
          warmup_steps=warmup_steps, holdout=holdout)
stages.world_stage(cfg)
source = source_for(cfg)
source.check()
{t: (s.classnames, s.id_domain, s.ood_domains) for t, s in source.tasks().items()}
'''),
        md("## The world\nTest images of every task and domain. The first domain of each task is its "
           "in-distribution (ID) domain; the others are the shifted (OOD) domains used for domain "
           "generalization."),
        code('''
if cfg["data"]["source"] == "embedded":
    plots.world_samples(source);
'''),
        md("## The pretraining corpus\nHow many image-caption pairs show each task's concepts "
           "(uneven by design: `world.corpus.coverage` in the profile), and a few captions."),
        code('''
if cfg["data"]["source"] == "embedded":
    from lib.world import load_corpus
    display(stages.corpus_summary(cfg))
    print(load_corpus(cfg)["captions"][:12])
'''),
        md("## Pretraining"),
        code('''
info = stages.pretrain_stage(cfg, hp, seed)
{k: info.get(k) for k in ("train_seconds", "steps", "n_train_pairs", "n_holdout", "skipped")}
'''),
        code('''
if "history" in info:
    display(__import__("pandas").DataFrame(info["evals"]))
    plots.pretrain_curves(info);
'''),
    ]


def zero_shot():
    return header("01_zero_shot", "01 · Zero-shot difficulty of each task",
                  "For every task and domain: zero-shot accuracy with class-prompt heads, the average "
                  "cosine similarity (ACS) of each image with its class prompt, the silhouette score (ss) of "
                  "image vs text embeddings labelled by modality (cosine distance), the class silhouette of "
                  "the image embeddings and the modality gap. Writes `build/<profile>/results/zero_shot.csv`.") + [
        params_cell('''
profile = "smoke"
batch_size = 256
num_workers = 0
'''),
        code('''
from lib import stages, plots
cfg = stages.setup(profile)
df = stages.zero_shot_stage(cfg, batch_size, num_workers)
df.drop(columns=["data_fingerprint"]).round(3)
'''),
        md("Higher ss means the two modalities sit further apart (a *misaligned*, difficult task); "
           "higher ACS means images sit close to their class prompts."),
        code('''
plots.zero_shot_overview(df);
'''),
        code('''
df.groupby("task")[["zero_shot_acc", "chance", "acs", "silhouette", "modality_gap"]].mean().round(3)
'''),
    ]


def finetune():
    return header("02_finetune", "02 · Fine-tune one task with one method",
                  "Fine-tunes the profile's CLIP on one task's ID training data with one PEFT method (and "
                  "variant) and one seed: logits = logit_scale · normalised image features @ normalised "
                  "class-prompt features, cross-entropy, best-validation state kept. Writes "
                  "`build/<profile>/runs/<task>/<method>-<variant>/seed<k>/` (trainable state only, "
                  "`meta.json`, `row.json`). Make runs it for every task × method × seed of the profile.") + [
        params_cell('''
profile = "smoke"
task = "objects"
method = "aclip"
variant = "default"
seed = 0
epochs = 2
batch_size = 64
lr = 1.0e-3
momentum = 0.9
weight_decay = 1.0e-4
warmup_steps = 0
cosine = True
num_workers = 0
options = {}
variants = {}
'''),
        code('''
from lib import stages, plots
cfg = stages.setup(profile, seed)
hp = dict(epochs=epochs, batch_size=batch_size, lr=lr, momentum=momentum, weight_decay=weight_decay,
          warmup_steps=warmup_steps, cosine=cosine, num_workers=num_workers)
row = stages.finetune_stage(cfg, task, method, variant, seed, hp, options, variants)
row
'''),
        md("## Training curve\nTraining loss and validation accuracy per epoch (read back from the run's `meta.json`)."),
        code('''
plots.finetune_curve(stages.run_meta(cfg, task, method, variant, seed));
'''),
        md("## What each method trains, at the real ViT-B/32 scale\nTrainable parameters of every method on "
           "open_clip's `ViT-B-32-quickgelu` architecture (built from its config, no weights)."),
        code('''
stages.param_table_cached(profile)
'''),
    ]


def evaluate():
    cells = header("03_evaluate", "03 · DG / CF evaluation and alignment after fine-tuning",
                   "Evaluates every fine-tuning run of the profile: accuracy on the trained task's ID test "
                   "(ID), on its shifted domains (DG) and on every other task (CF), each next to the zero-shot "
                   "model on the same data; ACS and modality silhouette recomputed with the fine-tuned model. "
                   "Writes `build/<profile>/results/evaluation.csv`.") + [
        params_cell('''
profile = "smoke"
batch_size = 256
num_workers = 0
'''),
        code('''
import pandas as pd
from lib import stages, paths
cfg = stages.setup(profile)
ev = stages.evaluate_stage(cfg, batch_size, num_workers)
zs = pd.read_csv(paths.results_dir(profile) / "zero_shot.csv")
ev.head(12).round(3)
'''),
    ]
    try:
        from nbdefs_eval import evaluate_analysis_cells
        cells += evaluate_analysis_cells()
    except ImportError:
        pass
    return cells


def figures():
    from nbdefs_eval import figures as f
    return f()


NOTEBOOKS = {"00_pretrain": pretrain, "01_zero_shot": zero_shot, "02_finetune": finetune,
             "03_evaluate": evaluate, "04_figures": figures}
