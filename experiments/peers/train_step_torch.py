#!/usr/bin/env python3
"""train-step-50 peer: one training update in Pascanu et al.'s temporal-order setting, PyTorch.

Workload (the same as `cargo bench --bench train_step`): a vanilla tanh RNN (torch.nn.RNN)
with 6 one-hot inputs and 50 hidden units (--hidden), a linear readout to 4 classes at the last
step, softmax cross-entropy, batch 20 (--batch), T = 200 steps (--T), float64 (--dtype float32
for the framework's fast path), 1 thread (--threads: many independent trainings run in
parallel, so throughput per core is what counts). One update = forward, backward, global-norm
clipping at 1.0 (clip_grad_norm_), plain SGD step (lr 0.01).

Inputs: 16 batches of random one-hot sequences and random classes, drawn once from a
torch.Generator seeded 0 (common.one_hot_batches); weights: torch's default initialisation
after torch.manual_seed(0).

Timed: 20 warm-up updates (untimed), then --updates (default 300) timed updates cycling
through the 16 batches; input generation is not timed. Prints
`peer=torch workload=train-step-50 ...` and
`updates=... seconds=... updates_per_second=... ms_per_update=...`.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common as C  # noqa: E402

VOCAB = 6       # one-hot inputs (the temporal-order symbols)
CLASSES = 4     # AA, AB, BA, BB
BATCHES = 16
WARMUP = 20


def main():
    ap = C.parser(__doc__)
    ap.add_argument("--T", type=int, default=200, help="sequence length (default 200)")
    ap.add_argument("--batch", type=int, default=20)
    ap.add_argument("--hidden", type=int, default=50)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--updates", type=int, default=300, help="timed updates (default 300)")
    ap.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    a = ap.parse_args()
    torch = C.import_torch(a.threads)
    dt = getattr(torch, a.dtype)
    dev = torch.device(a.device)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = torch.nn.RNN(VOCAB, a.hidden, nonlinearity="tanh")
            self.out = torch.nn.Linear(a.hidden, CLASSES)

        def forward(self, x):                      # x (T, batch, VOCAB) -> (batch, CLASSES)
            return self.out(self.rnn(x)[0][-1])

    net = Net().to(dt).to(dev)
    update = C.make_update(torch, net, torch.optim.SGD(net.parameters(), lr=C.LR))
    batches = C.one_hot_batches(torch, BATCHES, a.T, a.batch, VOCAB, CLASSES, False, dt, dev)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    s = C.time_updates(update, batches, WARMUP, a.updates, sync)
    print(f"peer=torch workload=train-step-50 T={a.T} batch={a.batch} hidden={a.hidden} "
          f"dtype={a.dtype} threads={a.threads} device={a.device} torch={torch.__version__}")
    print(f"updates={a.updates} seconds={s:.3f} updates_per_second={a.updates / s:.1f} "
          f"ms_per_update={1000 * s / a.updates:.3f}")


if __name__ == "__main__":
    main()
