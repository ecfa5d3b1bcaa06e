"""``hydra/launcher=slurm`` (conf/hydra/launcher/slurm.yaml). Hydra takes launchers only from the
``hydra_plugins`` package, and imports every module there at each start: this one stays light
and hands the work to ``ssl_lab.slurm``."""

from collections.abc import Sequence

from hydra.core.utils import JobReturn
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher


class SslLabSlurmLauncher(SlurmLauncher):
    """Hydra's submitit SLURM launcher; ``ssl_lab.slurm.launch`` says what it adds."""

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        from ssl_lab.slurm import launch

        return launch(self, job_overrides, initial_job_idx)
