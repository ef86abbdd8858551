"""Collection settings for the whole tree (the doctests under vmaptune/ included).

Modules that import an optional package (the MLflow and TensorBoard trackers) are left
out of the doctests without it; their tests skip. The doctests that train run in the slow
tier (``SLOW_DOCTESTS``)."""

import importlib.util

import pytest

collect_ignore = [path for path, package in (
    ("vmaptune/reporting/tracking/mlflow_tracker.py", "mlflow"),
    ("vmaptune/reporting/tracking/tensorboard_tracker.py", "tensorboard"))
    if importlib.util.find_spec(package) is None]

# Doctests that train a search or a population, like the docs pages' examples (test_docs.py),
# run in the slow tier: the features they show have fast tests.
SLOW_DOCTESTS = {"vmaptune.tuner.tune", "vmaptune.reporting.report.report",
                 "vmaptune.reporting.progress", "vmaptune.lanes.population.Population"}

# The heaviest tests (over about 4 s each on the project's 2-core CPU, `--durations`,
# 2026-12-07) whose features a faster test also checks run in the slow tier too: the
# invariants keep one test each in the fast tier (lane equivalence, no recompiles and the
# test split read once, an isolated diverged lane, a run directory, the toy extensions).
SLOW_TESTS = (
    "tests/test_rundir.py::test_a_resumed_run_equals_the_uninterrupted_run[structural-killed",
    "tests/test_chunks.py::test_memory_budget_splits_lanes_into_chunks_with_unchanged_results",
    "tests/test_objectives.py::test_the_escape_hatch_trains_a_vae_with_a_searched_kl_weight_and_a_fresh_key_each_step",
    "tests/test_mlflow.py::test_a_run_logs_live_to_mlflow_as_the_export_would",
    "tests/test_strategies.py::test_successive_halving_stops_lanes_at_rungs_and_spends_less",
    "tests/test_structural.py::test_a_bucket_whose_lanes_all_diverge_is_dropped_and_its_lanes_go_to_the_survivor",
    "tests/test_reliability.py::test_a_damaged_file_is_named_and_resume_from_intact_moves_it_aside[summary",
    "tests/test_progress.py::test_pieces_of_training_are_reported_and_change_no_result",
    "tests/test_figures.py::test_figures_are_pngs_and_the_pair_panels_follow_the_records",
    "tests/test_cli.py::test_the_default_experiment_runs_shrunk_and_reports_everything",
    "tests/test_optuna_sampler.py::test_structural_parameters_are_trained_in_their_buckets",
    "tests/test_rundir.py::test_a_resumed_run_equals_the_uninterrupted_run[pbt-killed",
    "tests/test_tuner.py::test_a_second_run_loads_its_programs_from_the_persistent_cache",
    "tests/test_models.py::test_the_transformer_maps_tokens_to_logits_of_every_position",
    "tests/test_objectives.py::test_each_lane_equals_its_configuration_trained_alone[language_model]",
    "tests/test_train.py::test_each_lane_equals_its_config_trained_alone",
    "tests/test_confirmation.py::test_the_stage_trains_k_times_s_lanes_in_a_rounds_program_and_the_result_follows_its_choice",
    "tests/test_structural.py::test_a_traced_integer_reaches_the_optimizer_and_is_recorded_as_an_int",
    "tests/test_optimizers.py::test_tune_searches_every_new_hyperparameter[random]",
    "tests/test_nnx.py::test_nnx_lanes_draw_their_weights_from_the_key_and_equal_training_alone",
    "tests/test_tuner.py::test_diverged_lanes_are_scored_worst_and_left_out_of_narrowing",
    "tests/test_optimizers.py::test_sgd_and_custom_optimizer_factories_train",
    "tests/test_objectives.py::test_each_lane_equals_its_configuration_trained_alone[classification]",
    "tests/test_objectives.py::test_a_text_classifier_reads_int_tokens_from_dict_splits",
    "tests/test_objectives.py::test_new_rounds_never_recompile_and_the_test_split_is_read_once[language_model]",
    "tests/test_structural.py::test_every_round_trains_each_bucket_and_recurring_buckets_compile_nothing",
    "tests/test_model_samplers.py::test_proposals_stay_inside_the_space_and_repeat_for_the_same_seed[evolution]",
    "tests/test_samplers.py::test_a_config_file_chooses_the_optuna_sampler_by_name",
    "tests/test_optuna_sampler.py::test_tpe_rounds_train_as_populations_and_are_told_their_scores",
    "tests/test_rounds.py::test_out_of_memory_reruns_the_round_in_smaller_chunks_with_the_same_results",
    "tests/test_strategies.py::test_diverged_lanes_are_never_kept_copied_or_used_for_narrowing[halving(eta=3)]",
    "tests/test_keys.py::test_each_seed_lane_equals_its_config_trained_alone_with_that_seeds_keys",
    "tests/test_tensorboard.py::test_a_regression_run_lists_its_metrics_and_the_lowest_mse",
    "tests/test_reliability.py::test_a_damaged_file_is_named_and_resume_from_intact_moves_it_aside[trials",
    "tests/test_rundir.py::test_a_run_directory_of_the_previous_format_resumes_shows_and_reports",
    "tests/test_figures.py::test_one_numeric_parameter_draws_accuracy_against_it_and_a_lineage_curve",
    "tests/test_progress.py::test_buckets_are_reported_with_their_structural_values",
    "tests/test_report.py::test_show_lists_a_regression_run_by_its_mse_lowest_first",
    "tests/test_objectives.py::test_new_rounds_never_recompile_and_the_test_split_is_read_once[regression]",
    "tests/test_population.py::test_batched_evaluation_equals_one_pass_over_the_whole_split",
    "tests/test_strategies.py::test_tune_with_seeds_ranks_configurations_by_their_mean_and_records_the_spread",
    "tests/test_strategies.py::test_a_surviving_lane_continues_exactly_as_without_compaction[None]",
    "tests/test_samplers.py::test_tune_with_an_optuna_study_records_its_rounds_and_confirming_tells_the_study_nothing",
    "tests/test_train.py::test_adam_betas_live_in_the_optimizer_state_and_follow_mid_run_changes",
    "tests/test_optimizers.py::test_a_custom_factory_gets_warmup_and_the_trainer_names",
    "tests/test_objectives.py::test_every_sampler_keeps_the_lowest_errors_of_a_minimised_metric[evolution]",
    "tests/test_optuna_sampler.py::test_a_study_given_to_a_second_run_is_continued_and_a_diverged_trial_can_be_failed",
    "tests/test_strategies.py::test_diverged_lanes_are_never_kept_copied_or_used_for_narrowing[hyperband(eta=3)]",
    "tests/test_report.py::test_the_command_writes_the_figures",
    "tests/test_objectives.py::test_nested_pytree_inputs_train_and_their_parameters_load_back",
    "tests/test_progress.py::test_no_progress_prints_nothing",
    "tests/test_strategies.py::test_hyperband_runs_brackets_that_start_later_with_fewer_lanes",
    "tests/test_optimizers.py::test_warmup_scales_the_first_steps_linearly",
    "tests/test_objectives.py::test_a_searched_loss_weight_is_traced_per_lane_and_never_recompiles",
    "tests/test_objectives.py::test_the_search_ranks_in_the_objectives_direction_and_skips_diverged_lanes",
    "tests/test_optuna_sampler.py::test_a_regression_study_minimises_the_mse_and_is_told_it",
    "tests/test_train.py::test_the_default_value_reproduces_the_baseline_exactly[b1]",
    "tests/test_train.py::test_the_dropout_layer_takes_a_traced_rate",
    "tests/test_train.py::test_the_default_value_reproduces_the_baseline_exactly[b2]",
    "tests/test_samplers.py::test_a_sampler_object_reused_by_a_second_run_starts_afresh",
    "tests/test_strategies.py::test_changing_a_lanes_hyperparameters_mid_run_takes_effect",
    "tests/test_tuner.py::test_when_every_lane_diverges_the_error_says_so_and_suggests_a_range",
    "tests/test_train.py::test_the_default_value_reproduces_the_baseline_exactly[dropout_rate]",
)


def pytest_collection_modifyitems(config, items):
  for item in items:
    if item.name in SLOW_DOCTESTS or item.nodeid.startswith(SLOW_TESTS):
      item.add_marker(pytest.mark.slow)
