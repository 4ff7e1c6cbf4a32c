"""The accuracy studies: the runner, its variants, statistics and reports, and the scripts over finished runs."""
