"""Small Flax NNX test models of the shapes users fine-tune: MLP, CNN with
BatchNorm and Dropout, a residual model and a transformer-like block stack."""

from flax import nnx


class SmallCNN(nnx.Module):
  """conv-BN-relu-pool, conv-relu, dropout, dense, head; NHWC inputs."""

  def __init__(self, num_outputs=3, *, rngs):
    self.conv1 = nnx.Conv(1, 4, (3, 3), rngs=rngs)
    self.norm1 = nnx.BatchNorm(4, rngs=rngs)
    self.conv2 = nnx.Conv(4, 4, (3, 3), rngs=rngs)
    self.dropout = nnx.Dropout(0.2, rngs=rngs)
    self.dense = nnx.Linear(4 * 4 * 4, 8, rngs=rngs)
    self.out = nnx.Linear(8, num_outputs, rngs=rngs)

  def __call__(self, x):
    x = nnx.relu(self.norm1(self.conv1(x)))
    x = nnx.avg_pool(x, (2, 2), (2, 2))
    x = nnx.relu(self.conv2(x))
    x = x.reshape(x.shape[0], -1)
    return self.out(nnx.relu(self.dense(self.dropout(x))))


class ResBlock(nnx.Module):

  def __init__(self, width, *, rngs):
    self.dense1 = nnx.Linear(width, width, rngs=rngs)
    self.norm = nnx.LayerNorm(width, rngs=rngs)
    self.dense2 = nnx.Linear(width, width, rngs=rngs)

  def __call__(self, x):
    return x + self.dense2(nnx.relu(self.norm(self.dense1(x))))


class Residual(nnx.Module):
  """stem, a list of residual blocks, a head named ``classifier``."""

  def __init__(self, in_features=8, num_outputs=3, *, rngs):
    self.stem = nnx.Linear(in_features, 8, rngs=rngs)
    self.blocks = nnx.List([ResBlock(8, rngs=rngs) for _ in range(2)])
    self.classifier = nnx.Linear(8, num_outputs, rngs=rngs)

  def __call__(self, x):
    x = self.stem(x)
    for block in self.blocks:
      x = block(x)
    return self.classifier(x)


class EncoderBlock(nnx.Module):

  def __init__(self, width, *, rngs):
    self.norm1 = nnx.LayerNorm(width, rngs=rngs)
    self.attention = nnx.MultiHeadAttention(2, width, decode=False, rngs=rngs)
    self.norm2 = nnx.LayerNorm(width, rngs=rngs)
    self.mlp = nnx.Linear(width, width, rngs=rngs)

  def __call__(self, x):
    x = x + self.attention(self.norm1(x))
    return x + self.mlp(self.norm2(x))


class Transformer(nnx.Module):
  """Token embedding of a [batch, tokens, features] input, 2 encoder blocks,
  a final norm, mean pooling and an output layer ``logits``."""

  def __init__(self, in_features=4, num_outputs=3, *, rngs):
    self.embed = nnx.Linear(in_features, 8, rngs=rngs)
    self.encoder = nnx.List([EncoderBlock(8, rngs=rngs) for _ in range(2)])
    self.final_norm = nnx.LayerNorm(8, rngs=rngs)
    self.logits = nnx.Linear(8, num_outputs, rngs=rngs)

  def __call__(self, x):
    x = self.embed(x)
    for block in self.encoder:
      x = block(x)
    return self.logits(self.final_norm(x).mean(1))
