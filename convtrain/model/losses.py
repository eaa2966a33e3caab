"""Losses over a batch of scores s (N, K) and integer labels y (N,), averaged over N.

Each returns (loss, ds, kinks): ds (N, K) = dloss/ds, and the discrete state
(hinge's active margins) that a gradient check must not see change, or None.

    softmax_cross_entropy  L = -mean_n log softmax(s_n)[y_n] (or with smoothed targets)
    mse                    L = mean over N*K of (s - onehot(y))^2
    hinge                  L = mean_n sum_{k != y_n} max(0, s_nk - s_ny + 1)   (multiclass SVM)
"""

import functools

import numpy as np


def softmax_cross_entropy(scores, labels, label_smoothing=0.0):
    """With label_smoothing ε, PyTorch's: the target of sample n is (1 - ε)·onehot(y_n) + ε/K,
    L = -mean_n Σ_k target_nk log softmax(s_n)_k, and ds = softmax(s) - target, over N."""
    shifted = scores - scores.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    rows = np.arange(len(labels))
    if label_smoothing:
        target = np.full_like(scores, label_smoothing / scores.shape[1])
        target[rows, labels] += 1.0 - label_smoothing
        loss = -(target * log_probs).sum(axis=1).mean()
        return float(loss), (np.exp(log_probs) - target) / len(labels), None
    loss = -log_probs[rows, labels].mean()
    dscores = np.exp(log_probs)
    dscores[rows, labels] -= 1.0
    return float(loss), dscores / len(labels), None


def mse(scores, labels):
    target = np.zeros_like(scores)
    target[np.arange(len(labels)), labels] = 1.0
    diff = scores - target
    loss = float((diff * diff).mean())
    return loss, 2.0 * diff / diff.size, None


def hinge(scores, labels):
    rows = np.arange(len(labels))
    margins = scores - scores[rows, labels][:, None] + 1.0
    margins[rows, labels] = 0.0
    active = margins > 0
    loss = float(np.where(active, margins, 0.0).sum(axis=1).mean())
    dscores = active.astype(scores.dtype)
    dscores[rows, labels] = -active.sum(axis=1)
    return loss, dscores / len(labels), active


LOSSES = {"softmax_cross_entropy": softmax_cross_entropy, "mse": mse, "hinge": hinge}


def loss_function(config):
    """(scores, labels) -> (loss, ds, kinks): the config's loss, with its label smoothing."""
    if config.label_smoothing:
        return functools.partial(softmax_cross_entropy, label_smoothing=config.label_smoothing)
    return LOSSES[config.loss]
