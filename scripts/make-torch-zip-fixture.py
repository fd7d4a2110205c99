#!/usr/bin/env python3
"""Writes crates/thesis-torch/src/nn/import/fixtures/tiny_rnn_tanh.pt: a state dict in torch.save's zip
format (PyTorch >= 1.6), for the Rust reader's unit test, without needing PyTorch itself.

The layout is what torch.save writes: `<name>/data.pkl` (protocol 2; tensors pickled as
`torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks)`, storages
as persistent ids `('storage', torch.<Type>Storage, key, 'cpu', numel)`), `<name>/data/<key>`
(raw little-endian bytes), `<name>/byteorder` and `<name>/version`. To exercise the reader it
holds a transposed view (strides), two tensors sharing one storage at different offsets, a
float64 tensor and an int64 scalar that the test drops.

Model: rnn_tanh, 1 layer, hidden 3, embedding 2, vocabulary 128, 2 classes, with value
v(name, i) = (i + 1) / 100 * (k + 1) for the k-th tensor in the order below, i the row-major index.
"""
import collections, io, pickle, struct, sys, types, zipfile

torch = types.ModuleType("torch")
utils = types.ModuleType("torch._utils")
sys.modules["torch"], sys.modules["torch._utils"] = torch, utils
for name in ("FloatStorage", "DoubleStorage", "LongStorage"):
    setattr(torch, name, type(name, (), {"__module__": "torch"}))
def _rebuild_tensor_v2(*args):
    raise RuntimeError("only pickled, never called")
_rebuild_tensor_v2.__module__ = "torch._utils"
utils._rebuild_tensor_v2 = _rebuild_tensor_v2

class Storage:
    def __init__(self, key, kind, fmt, values):
        self.key, self.kind, self.values = key, kind, values
        self.data = struct.pack("<%d%s" % (len(values), fmt), *values)

class Tensor:
    def __init__(self, storage, offset, size, stride):
        self.args = (storage, offset, tuple(size), tuple(stride), False, collections.OrderedDict())
    def __reduce_ex__(self, protocol):
        return (_rebuild_tensor_v2, self.args)

class Pickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, Storage):
            return ("storage", obj.kind, obj.key, "cpu", len(obj.values))
        return None

def values(k, n):
    return [(i + 1) / 100 * (k + 1) for i in range(n)]

shapes = [("embedding.weight", [128, 2]), ("rnn.weight_ih_l0", [3, 2]), ("rnn.weight_hh_l0", [3, 3]),
          ("rnn.bias_ih_l0", [3]), ("rnn.bias_hh_l0", [3]), ("head.weight", [2, 3]), ("head.bias", [2])]
storages, state = [], collections.OrderedDict()
def add(storage):
    storages.append(storage)
    return storage
def contiguous(size):
    return [size[1], 1] if len(size) == 2 else [1]

emb = add(Storage("0", torch.FloatStorage, "f", values(0, 256)))
state["embedding.weight"] = Tensor(emb, 0, [128, 2], [2, 1])
ih = add(Storage("1", torch.FloatStorage, "f", values(1, 6)))
state["rnn.weight_ih_l0"] = Tensor(ih, 0, [3, 2], [2, 1])
# weight_hh stored transposed: element (r, c) lives at c * 3 + r.
hh_values = values(2, 9)
hh_t = [hh_values[r * 3 + c] for c in range(3) for r in range(3)]
hh = add(Storage("2", torch.FloatStorage, "f", hh_t))
state["rnn.weight_hh_l0"] = Tensor(hh, 0, [3, 3], [1, 3])
# Both biases in one storage, hh after ih.
biases = add(Storage("3", torch.FloatStorage, "f", values(3, 3) + values(4, 3)))
state["rnn.bias_ih_l0"] = Tensor(biases, 0, [3], [1])
state["rnn.bias_hh_l0"] = Tensor(biases, 3, [3], [1])
head = add(Storage("4", torch.FloatStorage, "f", values(5, 6)))
state["head.weight"] = Tensor(head, 0, [2, 3], [3, 1])
bias = add(Storage("5", torch.DoubleStorage, "d", values(6, 2)))
state["head.bias"] = Tensor(bias, 0, [2], [1])
step = add(Storage("6", torch.LongStorage, "q", [7]))
state["optimizer.step"] = Tensor(step, 0, [], [])

buffer = io.BytesIO()
Pickler(buffer, protocol=2).dump(state)
out = sys.argv[1] if len(sys.argv) > 1 else "crates/thesis-torch/src/nn/import/fixtures/tiny_rnn_tanh.pt"
with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:
    def write(name, data):
        info = zipfile.ZipInfo("tiny_rnn_tanh/" + name, date_time=(1980, 1, 1, 0, 0, 0))
        archive.writestr(info, data)
    write("data.pkl", buffer.getvalue())
    write("byteorder", b"little")
    for storage in storages:
        write("data/" + storage.key, storage.data)
    write("version", b"3\n")
