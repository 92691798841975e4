"""Transfer tasks: the embedded ones and the user's own data files.

Public API only: the code lives in ``lrtransfer._src``.
"""

from lrtransfer._src import extras as _extras

_extras.require_train_extra("lrtransfer.data", "sklearn", "scipy")

# The exports (the ``name as name`` imports), after the check above so that a
# missing optional dependency is reported with the install command.
from lrtransfer._src.data import CORRUPTIONS as CORRUPTIONS
from lrtransfer._src.data import TASKS as TASKS
from lrtransfer._src.data import DataError as DataError
from lrtransfer._src.data import Split as Split
from lrtransfer._src.data import TransferTask as TransferTask
from lrtransfer._src.data import breast_cancer_shift as breast_cancer_shift
from lrtransfer._src.data import (
    digits_corruption_shift as digits_corruption_shift,
)
from lrtransfer._src.data import digits_domain_shift as digits_domain_shift
from lrtransfer._src.data import digits_label_split as digits_label_split
from lrtransfer._src.data import get_task as get_task
from lrtransfer._src.data import load_split_file as load_split_file
from lrtransfer._src.data import load_user_task as load_user_task
from lrtransfer._src.data import mnist_label_split as mnist_label_split
from lrtransfer._src.data import mnist_to_digits as mnist_to_digits
from lrtransfer._src.data import teacher_student as teacher_student
from lrtransfer._src.data import wine_shift as wine_shift
