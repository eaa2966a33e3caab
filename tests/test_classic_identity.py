"""The classic-CNN layers train to the same bits whatever runs them: 1 or 2 threads, one run
or one cut mid-epoch and resumed, one process or `mpiexec -n 2` sharing each batch. The
config has grouped and dilated convolutions, a padded pool, a concat block, a
squeeze-and-excitation gate, LRN, a channel shuffle, an upsample and a transposed conv."""

import pytest
from test_distributed import arrays, assert_same_arrays, convtrain, records

CLASSIC = """\
name: classic
seed: 5
input: [1, 8, 8]
layers:
  - {type: conv2d, filters: 8, kernel: 3, padding: 1}
  - {type: lrn, size: 3}
  - {type: relu6}
  - {type: maxpool, size: 3, stride: 2, padding: 1, ceil_mode: true}
  - type: branches
    name: fire
    merge: concat
    paths:
      - [{type: conv2d, filters: 4, kernel: 3, groups: 2, padding: 1}, {type: hardswish}]
      - [{type: conv2d, filters: 4, kernel: 3, dilation: 2, padding: 2}, {type: silu}]
      - []
  - {type: channel_shuffle, groups: 2}
  - type: branches
    name: se
    merge: multiply
    paths:
      - []
      - [{type: globalavgpool}, {type: dense, units: 4}, {type: relu},
         {type: dense, units: 16}, {type: hardsigmoid}]
  - {type: conv2d, filters: 16, kernel: 3, groups: 16, padding: [1, 0, 0, 1]}
  - {type: batchnorm}
  - {type: upsample, scale: 2, mode: bilinear}
  - {type: conv_transpose2d, filters: 4, kernel: 3, stride: 2, padding: 1}
  - {type: avgpool, size: 3, stride: 3, padding: 1, count_include_pad: false}
  - {type: flatten}
  - {type: dense, units: 10}
loss: {type: softmax_cross_entropy, label_smoothing: 0.1}
optimizer: {type: sgd, lr: 0.05, momentum: 0.9, weight_decay: 0.0001}
train: {epochs: 2, batch_size: 20, shuffle: true}
data:
  train: {format: builtin, name: digits, scale: 16, limit: 300}
  val: {split: 0.2}
log: {every: 3}
"""


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The classic config trained for 2 epochs (12 steps each) by one process, 1 thread."""
    folder = tmp_path_factory.mktemp("reference")
    (folder / "classic.yaml").write_text(CLASSIC)
    result = convtrain("train", "classic.yaml", "--out", "one", "--quiet", "--threads", "1",
                       cwd=folder)
    assert result.returncode == 0, result.stderr
    return folder


def _same_run(reference, folder):
    assert_same_arrays(arrays(reference / "one"), arrays(folder))
    assert records(folder) == records(reference / "one")


def test_two_threads_give_the_same_bits(reference, tmp_path):
    (tmp_path / "classic.yaml").write_text(CLASSIC)
    result = convtrain("train", "classic.yaml", "--out", "run", "--quiet", "--threads", "2",
                       cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    _same_run(reference, tmp_path / "run")


def test_a_run_cut_mid_epoch_resumes_to_the_same_bits(reference, tmp_path):
    (tmp_path / "classic.yaml").write_text(CLASSIC)
    cut = convtrain("train", "classic.yaml", "--out", "run", "--quiet", "--max-steps", "17",
                    cwd=tmp_path)  # step 17: in the middle of epoch 2
    assert cut.returncode == 0, cut.stderr
    resumed = convtrain("train", "classic.yaml", "--resume", "run/checkpoint-last.npz",
                        "--quiet", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    _same_run(reference, tmp_path / "run")


def test_two_processes_sharing_each_batch_give_the_same_bits(reference, tmp_path):
    (tmp_path / "classic.yaml").write_text(CLASSIC)
    result = convtrain("train", "classic.yaml", "--out", "run", "--quiet", processes=2,
                       cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    _same_run(reference, tmp_path / "run")
