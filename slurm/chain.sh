#!/bin/bash
# Submit a search as a chain of N jobs, each starting when the previous one ends (--dependency=afterany),
# for clusters where a job may not requeue itself. Each job continues the library with --resume; once
# the search is finished, the remaining jobs exit at once.
#
#   slurm/chain.sh 5 --nodes=2 --gpus-per-node=4 --ntasks-per-node=5 slurm/gpu.sbatch jobs/mnist1d.toml lib.h5
set -euo pipefail
count=${1:?usage: slurm/chain.sh N [sbatch options] TEMPLATE JOB.toml LIBRARY.h5}
shift
(( $# >= 3 )) || { echo "usage: slurm/chain.sh N [sbatch options] TEMPLATE JOB.toml LIBRARY.h5" >&2; exit 2; }
previous=""
for (( i = 1; i <= count; i++ )); do
    dependency=()
    [[ -n "$previous" ]] && dependency=(--dependency=afterany:"$previous")
    previous=$(sbatch --parsable --export=ALL,MENNDL_REQUEUE=0 "${dependency[@]}" "$@")
    previous=${previous%%;*}  # "ID;cluster" -> ID
    echo "submitted job $previous ($i of $count)"
done
