/* presets.c - the robot presets: openpi's Pi0 serving configs (SERVING_SPEC 3.3-3.6) written
 * as data. Adding a robot means adding a row here; the transforms read only these fields.
 * Pi0.5 and Pi0-FAST configs are not here: they need other normalization and prompt formats. */
#include "policy/policy_internal.h"

#define DROID_KEYS                                                                          \
    .robot = PI0_ROBOT_DROID, .robot_name = "DROID", .n_state_parts = 2,                    \
    .state_parts = { { "observation/joint_position", 7 }, { "observation/gripper_position", 1 } }, \
    .state_dim = 8, .n_sources = 2,                                                          \
    .sources = { { "observation/exterior_image_1_left", 0, true },                          \
                 { "observation/wrist_image_left", 1, true } },                             \
    .reply_dim = 8

/* cam_low is accepted but not used (SERVING_SPEC 3.4). */
#define ALOHA_KEYS                                                                          \
    .robot = PI0_ROBOT_ALOHA, .robot_name = "ALOHA", .horizon = 50, .n_state_parts = 1,     \
    .state_parts = { { "state", 14 } }, .state_dim = 14, .images_map = "images",            \
    .channel_first_only = true, .n_sources = 4,                                             \
    .sources = { { "cam_high", 0, true }, { "cam_left_wrist", 1, false },                   \
                 { "cam_right_wrist", 2, false }, { "cam_low", -1, false } },               \
    .aloha_convert = true, .reply_dim = 14

/* Joints are deltas from the current state, grippers absolute: (6, -1, 6, -1). */
#define ALOHA_DELTAS .n_delta = 14, .delta_mask = { 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 0 }

static const pi0_preset presets[] = {
    { .name = "droid", .config = "pi0_droid", DROID_KEYS, .horizon = 10, .asset_id = "droid" },
    { .name = "aloha", .config = "pi0_aloha", ALOHA_KEYS, ALOHA_DELTAS, .asset_id = "trossen",
      .reset_pose = true },
    { .name = "aloha_towel", .config = "pi0_aloha_towel", ALOHA_KEYS, ALOHA_DELTAS,
      .default_prompt = "fold the towel", .asset_id = "trossen", .reset_pose = true },
    { .name = "aloha_tupperware", .config = "pi0_aloha_tupperware", ALOHA_KEYS, ALOHA_DELTAS,
      .default_prompt = "open the tupperware and put the food on the plate", .asset_id = "trossen",
      .reset_pose = true },
    { .name = "aloha_sim", .config = "pi0_aloha_sim", ALOHA_KEYS, .default_prompt = "Transfer cube",
      .asset_id = "lerobot/aloha_sim_transfer_cube_human" },
    { .name = "libero", .config = "pi0_libero", .robot = PI0_ROBOT_LIBERO, .robot_name = "LIBERO",
      .horizon = 50, .n_state_parts = 1, .state_parts = { { "observation/state", 8 } }, .state_dim = 8,
      .n_sources = 2,
      .sources = { { "observation/image", 0, true }, { "observation/wrist_image", 1, true } },
      .reply_dim = 7, .n_delta = 7, .delta_mask = { 1, 1, 1, 1, 1, 1, 0 },
      .asset_id = "physical-intelligence/libero" },
};

enum { N_PRESETS = sizeof presets / sizeof presets[0] };

static const char *const preset_names[N_PRESETS + 1] = {
    "droid", "aloha", "aloha_towel", "aloha_tupperware", "aloha_sim", "libero", NULL,
};

const char *const *pi0_policy_preset_names(void) { return preset_names; }

const pi0_preset *pi0_preset_find(const char *name) {
    if (!name) return NULL;
    for (int i = 0; i < N_PRESETS; i++)
        if (!strcmp(presets[i].name, name) || !strcmp(presets[i].config, name)) return &presets[i];
    return NULL;
}
