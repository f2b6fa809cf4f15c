#!/usr/bin/python3
"""PyTorch reference for genlab's MLP VAE (examples/vae_mnist.lua).

The seed's model: 784-400-20 encoder (ReLU), 20-400-784 decoder (ReLU,
sigmoid output), loss = binary cross-entropy summed over pixels + the KL
divergence of N(mu, exp(logvar)) from N(0, 1), reparameterized sampling.
Fashion-MNIST from Debian's dataset-fashion-mnist, batch 128, Adam 1e-3,
shuffled training set each epoch. Prints, per epoch, the average training
loss and the average test loss per image (the seed's "test set loss"), and
the seconds the epoch took.

    OMP_NUM_THREADS=1 /usr/bin/python3 bench/torch_vae.py [--epochs 10] [--seed 1] [--threads 1]
"""
import argparse
import gzip
import os
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

DIR = "/usr/share/datasets/fashion-mnist"


def read_idx(path):
    """IDX file (gzip or not) -> numpy array with its stored shape."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load(split, data_dir):
    prefix = "train" if split == "train" else "t10k"
    images = read_idx(os.path.join(data_dir, prefix + "-images-idx3-ubyte.gz"))
    return torch.from_numpy(images.astype(np.float32) / 255.0).reshape(-1, 784)


class VAE(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(784, 400)
        self.fc21 = nn.Linear(400, 20)
        self.fc22 = nn.Linear(400, 20)
        self.fc3 = nn.Linear(20, 400)
        self.fc4 = nn.Linear(400, 784)

    def encode(self, x):
        h = F.relu(self.fc1(x))
        return self.fc21(h), self.fc22(h)

    def decode(self, z):
        return torch.sigmoid(self.fc4(F.relu(self.fc3(z))))

    def forward(self, x):
        mu, logvar = self.encode(x)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return self.decode(z), mu, logvar


def loss_function(recon, x, mu, logvar):
    bce = F.binary_cross_entropy(recon, x, reduction="sum")
    kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return bce + kld


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--data", default=DIR)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    train_x, test_x = load("train", args.data), load("test", args.data)
    model = VAE()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    print(f"torch {torch.__version__}, {args.threads} thread(s), batch {args.batch}, Adam 1e-3, seed {args.seed}")
    for epoch in range(1, args.epochs + 1):
        t0 = time.time()
        model.train()
        perm = torch.randperm(train_x.shape[0])
        total = 0.0
        for i in range(0, train_x.shape[0], args.batch):
            x = train_x[perm[i:i + args.batch]]
            opt.zero_grad()
            recon, mu, logvar = model(x)
            loss = loss_function(recon, x, mu, logvar)
            loss.backward()
            opt.step()
            total += loss.item()
        model.eval()
        test = 0.0
        with torch.no_grad():
            for i in range(0, test_x.shape[0], args.batch):
                x = test_x[i:i + args.batch]
                recon, mu, logvar = model(x)
                test += loss_function(recon, x, mu, logvar).item()
        print(f"epoch {epoch:2d}  train loss {total / train_x.shape[0]:.4f}  "
              f"test loss {test / test_x.shape[0]:.4f}  ({time.time() - t0:.1f} s)", flush=True)


if __name__ == "__main__":
    main()
