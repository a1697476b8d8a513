#!/usr/bin/env python3
"""train_nets peer: one training update of gated and composite recurrent networks, PyTorch.

Workloads (--workload; the same six as `cargo bench --bench train_nets`), all batch 32
(--batch), T = 100 (--T), one-hot inputs over a vocabulary of 32 (--vocab), 1 thread:

  rnn-128        nn.RNN (tanh), 128 units, 1 layer, softmax over 2 classes at the last step
  lstm-128       nn.LSTM, same
  gru-128        nn.GRU, same
  bilstm-2x128   nn.LSTM(num_layers=2, bidirectional=True), a tag (8 classes) at every step
  reslstm-4x128  a 32 -> 128 linear map (no bias), then four 1-layer nn.LSTMs of 128 units,
                 x_{l+1} = x_l + LSTM_l(x_l) (residual), 2 classes at the last step
  lstm-512       nn.LSTM, 512 units (the size of Pascanu et al.'s PTB model), last step
  lm-rnn-500     nn.RNN (tanh), 500 units, a softmax over 50 classes at every step: the
                 language-model update of `language-model` (run with --T 200 --vocab 50;
                 bptt's model is the sigmoid RNN, which nn.RNN does not offer: compare with
                 `language-model --runs rnn-tanh:msgd-c`)
  lm-lstm-244    nn.LSTM, 244 units, same (the LSTM of the RNN's parameter count)

One update = forward, cross-entropy (mean over the scored steps and sequences), backward,
global-norm clipping at 1.0, one optimizer step: SGD lr 0.01 (or Adam lr 1e-3 with --adam).
float64 by default; --dtype float32 for the framework's fast path (oneDNN / MKL).
Weights: torch's default initialisation after torch.manual_seed(0); inputs: 8 batches of
random one-hot sequences and classes from a torch.Generator seeded 0 (common.one_hot_batches).

Timed: 10 warm-up updates (untimed), then --updates (default 100) timed updates cycling through
the 8 batches; input generation is not timed. Prints `peer=torch workload=... params=...`
and `updates=... seconds=... ms_per_update=...`.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common as C  # noqa: E402

WORKLOADS = {
    # name: (module, hidden, layers, bidirectional, residual_layers, classes, every_step)
    "rnn-128": ("rnn", 128, 1, False, 0, 2, False),
    "lstm-128": ("lstm", 128, 1, False, 0, 2, False),
    "gru-128": ("gru", 128, 1, False, 0, 2, False),
    "bilstm-2x128": ("lstm", 128, 2, True, 0, 8, True),
    "reslstm-4x128": ("lstm", 128, 1, False, 4, 2, False),
    "lstm-512": ("lstm", 512, 1, False, 0, 2, False),
    "lm-rnn-500": ("rnn", 500, 1, False, 0, 50, True),
    "lm-lstm-244": ("lstm", 244, 1, False, 0, 50, True),
}
BATCHES = 8
WARMUP = 10


def build(torch, workload, vocab):
    """The network of a workload (float32 as created)."""
    kind, hidden, layers, bi, res, classes, every = WORKLOADS[workload]
    cell = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[kind]

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            if res:
                self.inp = torch.nn.Linear(vocab, hidden, bias=False)
                self.rnns = torch.nn.ModuleList(cell(hidden, hidden) for _ in range(res))
            else:
                self.rnns = torch.nn.ModuleList(
                    [cell(vocab, hidden, num_layers=layers, bidirectional=bi)])
            self.out = torch.nn.Linear(hidden * (2 if bi else 1), classes)

        def forward(self, x):
            """x (T, batch, vocab) -> logits (batch, classes), or (T * batch, classes) for
            a tag at every step."""
            if res:
                h = self.inp(x)
                for r in self.rnns:
                    h = h + r(h)[0]
            else:
                h = self.rnns[0](x)[0]
            return self.out(h).reshape(-1, classes) if every else self.out(h[-1])

    return Net()


def main():
    ap = C.parser(__doc__)
    ap.add_argument("--workload", default="lstm-128", choices=list(WORKLOADS))
    ap.add_argument("--T", type=int, default=100)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--vocab", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--updates", type=int, default=100, help="timed updates (default 100)")
    ap.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    ap.add_argument("--adam", action="store_true", help="Adam (lr 1e-3) instead of SGD")
    a = ap.parse_args()
    torch = C.import_torch(a.threads)
    dt = getattr(torch, a.dtype)
    classes, every = WORKLOADS[a.workload][5:]
    net = build(torch, a.workload, a.vocab).to(dt)
    params = list(net.parameters())
    opt = torch.optim.Adam(params, lr=1e-3) if a.adam else torch.optim.SGD(params, lr=C.LR)
    update = C.make_update(torch, net, opt)
    batches = C.one_hot_batches(torch, BATCHES, a.T, a.batch, a.vocab, classes, every, dt)
    s = C.time_updates(update, batches, WARMUP, a.updates)
    print(f"peer=torch workload={a.workload} T={a.T} batch={a.batch} vocab={a.vocab} "
          f"params={sum(p.numel() for p in params)} dtype={a.dtype} threads={a.threads} "
          f"optimizer={'adam' if a.adam else 'sgd'} torch={torch.__version__}")
    print(f"updates={a.updates} seconds={s:.3f} ms_per_update={1000 * s / a.updates:.3f}")


if __name__ == "__main__":
    main()
