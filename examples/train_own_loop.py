"""Your own training loop, recorded for the app: a plain PyTorch loop distilling a small student from the
shipped digits teacher, with five added lines (marked "cakd-viz") that record it as a run.

    python examples/train_own_loop.py --epochs 3 --runs-dir runs
    cakd-viz app --runs-dir runs          # the Tune page shows it beside launched runs

Everything else is what any distillation script does: data loaders, a frozen teacher, a student, an
optimiser, cross-entropy plus a KD loss (here cakd-viz's CAKDLoss; any loss works), and one held-out
pass per epoch whose logits go to ``rec.log_epoch``. It runs in a few seconds per epoch on one CPU.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from cakd_viz.data import load_data
from cakd_viz.losses import CAKDLoss
from cakd_viz.models import load_model
from cakd_viz.runs import Recorder  # cakd-viz (1/5)


def student_net(classes: int = 10) -> nn.Module:
    """A small convolutional student for 8x8 digits."""
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(8 * 4 * 4, classes),
    )


@torch.no_grad()
def held_out_logits(model: nn.Module, loader: DataLoader) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits (N, C), labels (N,)) of ``model`` over ``loader``, in order."""
    model.eval()
    out, ys = [], []
    for x, y in loader:
        out.append(model(x))
        ys.append(y)
    return torch.cat(out), torch.cat(ys)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--runs-dir", default="runs", help="where the run folder goes (default: ./runs)")
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--beta", type=float, default=8.0, help="CAKD's weight of WCD")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    train_set, val_set = load_data("sample:digits:train").dataset, load_data("sample:digits:test").dataset
    train_loader = DataLoader(train_set, batch_size=64, shuffle=True)
    val_loader = DataLoader(val_set, batch_size=512)  # no shuffling: the same rows every epoch
    teacher, _ = load_model("sample:digits/teacher")
    student = student_net()
    kd = CAKDLoss(grouping="topk:3", alpha=1.0, beta=args.beta, temperature=4.0)
    opt = torch.optim.SGD(student.parameters(), lr=args.lr, momentum=0.9)
    teacher_val, labels = held_out_logits(teacher, val_loader)  # the teacher is frozen: once is enough
    config = {"loss": "cakd", "grouping": "topk:3", "T": 4.0, "alpha": 1.0, "beta": args.beta, "w_b": 1.0}
    config |= {"lr": args.lr, "epochs": args.epochs, "batch_size": 64, "seed": args.seed}
    config |= {"student": "examples/train_own_loop.py:student_net", "data": "sample:digits"}

    with Recorder(
        args.runs_dir, "own_loop_digits", config, "topk:3", 4.0, split="test"
    ) as rec:  # cakd-viz (2/5)
        for epoch in range(1, args.epochs + 1):
            student.train()
            total, seen = 0.0, 0
            for step, (x, y) in enumerate(train_loader):
                logits = student(x)
                with torch.no_grad():
                    t_logits = teacher(x)
                loss = F.cross_entropy(logits, y) + kd(logits, t_logits, y)
                opt.zero_grad()
                loss.backward()
                opt.step()
                total, seen = total + loss.item() * len(y), seen + len(y)
                if step % 5 == 0:
                    rec.log(loss=loss.item())  # cakd-viz (3/5), optional: per-step values
            student_val, _ = held_out_logits(student, val_loader)
            rec.log_epoch(epoch, student_val, teacher_val, labels, loss=total / seen)  # cakd-viz (4/5)
            print(f"epoch {epoch}: train loss {total / seen:.4f}")
    print(f"recorded in {rec.path}")  # cakd-viz (5/5): the run folder the app reads


if __name__ == "__main__":
    main()
