"""Transfer data: types, embedded tasks and the user's own files.

A `TransferTask` holds a source task (train/val) and a few-shot target task
(train/val/test) as NumPy arrays. Every builder is deterministic given its
``seed`` and runs in well under a second, so tests and benchmarks can build
tasks freely.

Embedded tasks (see `TASKS`):

* ``digits_label_split`` -- sklearn digits 0-4 as source, 5-9 as target (a new
  label space over the same input domain).
* ``digits_domain_shift`` -- the same ten digit classes, but the target images
  are shifted one pixel right (a new input domain).
* ``teacher_student_close`` / ``teacher_student_far`` -- synthetic tasks whose
  target labelling function is a random teacher network close to (similarity
  0.9) or far from (similarity 0.3) the source teacher.
* and more: corrupted digits, fewer shots, a similarity sweep, a tabular
  covariate shift and MNIST tasks (the full list: ``tasks.py``).

Inputs of all splits are standardised with the *source training* statistics:
the transferred layers were trained on inputs in that frame, so the target must
go through the same transform to reach them in it (re-standardising on the
target would silently undo part of a domain shift, and a few-shot target
training set gives noisy statistics anyway). Tabular features are standardised
one by one; pixels share one mean and scale (see `splitting.standardized_task`).
"""


from lrtransfer._src.data.files import load_split_file as load_split_file
from lrtransfer._src.data.files import load_user_task as load_user_task
from lrtransfer._src.data.tasks import TASKS as TASKS
from lrtransfer._src.data.tasks import get_task as get_task
from lrtransfer._src.data.types import DataError as DataError
from lrtransfer._src.data.types import Split as Split
from lrtransfer._src.data.types import TransferTask as TransferTask
from lrtransfer._src.data.tasks import digits_domain_shift as digits_domain_shift
from lrtransfer._src.data.tasks import digits_label_split as digits_label_split
from lrtransfer._src.data.tasks import teacher_student as teacher_student
from lrtransfer._src.data.corruptions import CORRUPTIONS as CORRUPTIONS
from lrtransfer._src.data.digits import digits_corruption_shift as digits_corruption_shift
from lrtransfer._src.data.mnist import mnist_label_split as mnist_label_split
from lrtransfer._src.data.mnist import mnist_to_digits as mnist_to_digits
from lrtransfer._src.data.tabular import breast_cancer_shift as breast_cancer_shift
from lrtransfer._src.data.tabular import wine_shift as wine_shift
