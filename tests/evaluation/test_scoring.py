"""RealBlur-style scoring against the official evaluation_RealBlur_ecc.py's numbers
(tests/fixtures/realblur, computed once with the official functions), and the
score tool's matching, files and bad input."""

import json
import os
import shutil
import subprocess
import sys
from typing import ClassVar

import flax.linen as nn
import jax
import numpy as np
import pytest
from PIL import Image

from deblur_jax.configs import mimo
from deblur_jax.core.errors import InputError
from deblur_jax.data import image_files
from deblur_jax.evaluation import dpdd, evaluator, protocols, realblur, results, scoring
from deblur_jax.parallel import sharding

FIXTURE = os.path.join(os.path.dirname(os.path.dirname(__file__)), 'fixtures', 'realblur')
EXPECTED = json.load(open(os.path.join(FIXTURE, 'expected.json')))
NAMES = sorted(EXPECTED['images'])
PSNR_TOLERANCE, SSIM_TOLERANCE = 0.01, 1e-4  # Issue 31: the official script's numbers.


def read(relative):
  return image_files.read_image(os.path.join(FIXTURE, relative)).rgb


@pytest.mark.parametrize('name', NAMES)
def test_aligned_scores_are_the_official_scripts(name):
  official = EXPECTED['images'][name]
  scores = realblur.score(read(official['result']), read(official['gt']))
  assert abs(scores['psnr'] - official['deblur_psnr']) < PSNR_TOLERANCE
  assert abs(scores['ssim'] - official['deblur_ssim']) < SSIM_TOLERANCE
  # The scores with OpenCV 4.x's warp (the official script pins 4.2.0) are as close.
  opencv4 = EXPECTED['variants']['opencv4']['images'][name]
  assert abs(scores['psnr'] - opencv4['deblur_psnr']) < PSNR_TOLERANCE
  # The blurred input: no alignment, every pixel.
  assert realblur.input_psnr(read(official['blur']), read(official['gt'])) == pytest.approx(
      official['blur_psnr'], abs=1e-6)


def test_the_alignment_finds_the_official_warp_and_undoes_the_shift():
  official = EXPECTED['images'][NAMES[0]]
  result, target = read(official['result']), read(official['gt'])
  _, _, mask, warp = realblur.align(result, target)
  np.testing.assert_allclose(warp, official['warp_matrix'], atol=2e-3)
  assert mask.sum() == pytest.approx(official['valid_mask_sum'], rel=1e-3)
  unaligned = realblur.masked_psnr(target, realblur.intensity_matched(result, target),
                                   np.ones_like(target))
  assert realblur.score(result, target)['psnr'] > unaligned + 3


def test_rsblur_clips_after_the_alignment():
  official = EXPECTED['images'][NAMES[0]]
  target = read(official['gt'])
  brighter = np.clip(read(official['result']) * 1.1, 0, 1)
  clipped, plain = (realblur.score(brighter, target, clip=c) for c in (True, False))
  assert clipped['psnr'] >= plain['psnr'] - 1e-9
  assert abs(clipped['psnr'] - plain['psnr']) < 1.0


def test_a_flat_result_is_an_alignment_error_naming_the_failure():
  target = read(EXPECTED['images'][NAMES[0]]['gt'])
  with pytest.raises(realblur.AlignmentError, match='ECC alignment failed'):
    realblur.score(np.full_like(target, 0.5), target)


def test_results_match_the_scene_folders_and_the_test_list(tmp_path):
  results = tmp_path / 'results'
  shutil.copytree(os.path.join(FIXTURE, 'results'), results)
  (results / 'scene001_blur_9.png').write_bytes((results / NAMES[0]).read_bytes())
  (results / 'notes.txt').write_text('not an image')
  os.remove(results / 'scene001_blur_2.png')
  layout, pairs, unmatched, missing = scoring.match_results(
      str(results), os.path.join(FIXTURE, 'data'),
      os.path.join(FIXTURE, 'data', 'RealBlur_J_test_list.txt'))
  assert layout == 'realblur'
  assert [p.name for p in pairs] == ['scene001_blur_1.png', 'scene244_blur_3.png']
  assert pairs[1].target.endswith(os.path.join('scene244_reflect', 'gt', 'gt_3.png'))
  assert [p.group for p in pairs] == ['scene001', 'scene244']
  assert unmatched == ['scene001_blur_9.png']
  assert missing == [os.path.join('scene001', 'gt', 'gt_2.png')]
  # Results as `predict` mirrors the blurred inputs: sceneNNN/blur/blur_K.png.
  nested = tmp_path / 'nested' / 'scene244' / 'blur'
  os.makedirs(nested)
  shutil.copy(os.path.join(FIXTURE, 'results', 'scene244_blur_3.png'), nested / 'blur_3.png')
  pairs = scoring.match_results(str(tmp_path / 'nested'), os.path.join(FIXTURE, 'data'))[1]
  assert [p.target for p in pairs] == [os.path.join(FIXTURE, 'data', 'scene244_reflect', 'gt',
                                                    'gt_3.png')]


def test_a_malformed_test_list_line_is_an_error_naming_it(tmp_path):
  bad = tmp_path / 'list.txt'
  bad.write_text('scene001/gt/gt_1.png scene001/blur/blur_1.png\nscene001/blur_1.png\n')
  with pytest.raises(InputError, match=r'list\.txt:2: expected a ground-truth path'):
    scoring.read_test_list(str(bad))


def test_another_size_or_bit_depth_is_reported_for_that_image(tmp_path):
  pair = scoring.match_results(os.path.join(FIXTURE, 'results'),
                               os.path.join(FIXTURE, 'data'))[1][0]
  small = tmp_path / 'small.png'
  Image.open(pair.result).crop((0, 0, 40, 30)).save(small)
  row = scoring.score_pair(pair.__class__(pair.name, pair.group, str(small), pair.target, None),
                           'realblur')
  assert row['name'] == pair.name and '40x30' in row['error']
  deep = tmp_path / 'deep.png'
  image_files.write_image(str(deep), read(os.path.relpath(pair.result, FIXTURE)),
                          image_files.LoadedImage(np.zeros((1, 1, 3)), 16, False))
  row = scoring.score_pair(pair.__class__(pair.name, pair.group, str(deep), pair.target, None),
                           'realblur')
  assert '16-bit' in row['error'] and '8-bit' in row['error']


def test_the_score_tool_writes_the_files_names_what_is_missing_and_exits_1(tmp_path):
  results = tmp_path / 'results'
  shutil.copytree(os.path.join(FIXTURE, 'results'), results)
  os.remove(results / 'scene001_blur_2.png')
  command = [sys.executable, '-m', 'deblur_jax.score', f'--results={results}',
             f'--data={os.path.join(FIXTURE, "data")}', '--protocol=realblur', '--workers=2',
             f'--test_list={os.path.join(FIXTURE, "data", "RealBlur_J_test_list.txt")}',
             f'--output={tmp_path / "scores"}']
  run = subprocess.run(command, capture_output=True, text=True)
  assert run.returncode == 1, run.stderr
  assert 'no result for 1: scene001/gt/gt_2.png' in run.stdout
  assert 'realblur (realblur layout): 2 images' in run.stdout
  scores = json.loads((tmp_path / 'scores' / 'scores.json').read_text())
  official = [EXPECTED['images'][n]['deblur_psnr'] for n in ('scene001_blur_1.png',
                                                              'scene244_blur_3.png')]
  assert scores['protocol'] == 'realblur' and scores['means']['count'] == 2
  assert scores['layout'] == 'realblur'
  assert abs(scores['means']['psnr'] - np.mean(official)) < PSNR_TOLERANCE
  assert set(scores['groups']) == {'scene001', 'scene244'}
  rows = (tmp_path / 'scores' / 'scores.csv').read_text().splitlines()
  assert rows[0] == 'name,group,psnr,ssim,input_psnr,input_ssim' and len(rows) == 3
  # Run again: the files exist, nothing is replaced without --overwrite.
  before = (tmp_path / 'scores' / 'scores.json').read_text()
  again = subprocess.run(command, capture_output=True, text=True)
  assert again.returncode == 2 and 'scores.csv exists; pass --overwrite' in again.stderr
  assert (tmp_path / 'scores' / 'scores.json').read_text() == before


class ReturnsTheInput(nn.Module):
  """A 'model' whose output is its input: the evaluation scores the blurred images."""
  size_multiple: ClassVar[int] = 1

  def __call__(self, images, train: bool = False):
    return [images]


@pytest.mark.parametrize('protocol', ['realblur', 'rsblur', 'dpdd'])
def test_evaluation_under_a_host_protocol_scores_every_image_in_its_row(tmp_path, protocol):
  """Three 64x96 pairs in one global batch of 4 (a padded row): each row holds the
  host's aligned scores of its own image and the official unaligned input PSNR."""
  sequence = tmp_path / 'data' / 'test' / 'scene'
  for name in NAMES:
    official = EXPECTED['images'][name]
    for kind, source in (('blur', official['blur']), ('sharp', official['gt'])):
      os.makedirs(sequence / kind, exist_ok=True)
      shutil.copy(os.path.join(FIXTURE, source), sequence / kind / name)
  config = mimo.get_config('tiny')
  config.data.dir = str(tmp_path / 'data')
  config.data.max_eval_images = 0  # All three.
  config.eval.protocol = protocol
  mesh = sharding.create_mesh(jax.devices()[:4])
  built = evaluator.build_evaluator(config, str(tmp_path / 'work'), mesh, ReturnsTheInput())
  result = evaluator.run_evaluation(built, {}, num_images=0)
  assert [row['name'].split('/')[-1] for row in result.rows] == NAMES
  for row, name in zip(result.rows, NAMES):
    official = EXPECTED['images'][name]
    blurred, target = read(official['blur']), read(official['gt'])
    if protocol == 'dpdd':
      expected = dpdd.score(blurred, target)
      assert row['mae'] == pytest.approx(expected['mae'], abs=1e-7)
    else:
      expected = realblur.score(blurred, target, clip=protocol == 'rsblur')
    assert row['psnr'] == pytest.approx(expected['psnr'], abs=1e-6)
    assert row['ssim'] == pytest.approx(expected['ssim'], abs=1e-6)
    assert row['input_psnr'] == pytest.approx(official['blur_psnr'], abs=1e-4)
    assert 0 < row['input_ssim'] < 1
  summary = result.summary()
  assert summary['protocol'] == protocol and summary['num_unscored'] == 0
  assert summary['psnr'] == pytest.approx(np.mean([r['psnr'] for r in result.rows]))


def test_an_image_the_alignment_cannot_score_is_left_out_of_the_means():
  rows = [{'name': 'a', 'group': '', 'psnr': 30.0, 'ssim': 0.9, 'mse': 0.0,
           'input_psnr': 25.0, 'input_ssim': 0.8},
          {'name': 'b', 'group': '', 'psnr': float('nan'), 'ssim': float('nan'), 'mse': 0.0,
           'input_psnr': 27.0, 'input_ssim': 0.6}]
  summary = results.EvalResult(rows, [], protocols.Protocol('realblur')).summary()
  assert summary['psnr'] == 30.0 and summary['input_psnr'] == 26.0
  assert summary['num_unscored'] == 1
  assert protocols.Protocol('realblur').on_host and protocols.Protocol('realblur').min_size == 21
  with pytest.raises(InputError, match=r"crop_border=4 is set, but config\.eval\.protocol="
                                       r"'realblur' takes no options"):
    protocols.Protocol('realblur', crop_border=4)


def copy_fixture_images(folder_of, name_of):
  """The fixture's (gt, blur, result) images copied to the paths the layout wants."""
  for index, name in enumerate(NAMES):
    official = EXPECTED['images'][name]
    for kind in ('gt', 'blur', 'result'):
      path = folder_of(kind, index) / name_of(kind, index)
      os.makedirs(path.parent, exist_ok=True)
      shutil.copy(os.path.join(FIXTURE, official[kind]), path)


def test_hide_restormer_and_gopro_layouts_match_results_by_name_and_group_them(tmp_path):
  hide, restormer, gopro = tmp_path / 'HIDE', tmp_path / 'test' / 'DPDD', tmp_path / 'GOPRO'
  hide_groups = ['test-close-ups', 'test-close-ups', 'test-long-shot']
  copy_fixture_images(lambda kind, i: {'gt': hide / 'GT', 'blur': hide / 'test' / hide_groups[i],
                                       'result': tmp_path / 'hide_results'}[kind],
                      lambda kind, i: f'{i}.png')
  copy_fixture_images(lambda kind, i: {'gt': restormer / 'target', 'blur': restormer / 'inputC',
                                       'result': tmp_path / 'dpdd_results'}[kind],
                      lambda kind, i: f'{i}.png')
  np.save(restormer / 'indoor_labels.npy', np.array([1, 3]))
  np.save(restormer / 'outdoor_labels.npy', np.array([2]))
  sequences = ['GOPR0384_11_00', 'GOPR0384_11_00', 'GOPR0385_11_01']
  copy_fixture_images(
      lambda kind, i: {'gt': gopro / sequences[i] / 'sharp', 'blur': gopro / sequences[i] / 'blur',
                       'result': tmp_path / 'gopro_results'}[kind],
      lambda kind, i: f'{sequences[i]}_00000{i}.png' if kind == 'result' else f'00000{i}.png')
  expected = {'HIDE': ('hide', ['close-ups', 'close-ups', 'long-shot']),
              'test/DPDD': ('target', ['indoor', 'outdoor', 'indoor']),
              'GOPRO': ('gopro', sequences)}
  for (data, (layout, groups)), results_dir in zip(
      expected.items(), ('hide_results', 'dpdd_results', 'gopro_results')):
    found, pairs, unmatched, missing = scoring.match_results(str(tmp_path / results_dir),
                                                             str(tmp_path / data))
    assert found == layout and not unmatched and not missing
    assert [p.group for p in pairs] == groups
    assert all(p.blurred is not None for p in pairs)
  # Results as `predict` mirrors the blurred inputs' paths: SEQUENCE/blur/NAME.
  mirrored = tmp_path / 'mirrored'
  copy_fixture_images(lambda kind, i: mirrored / sequences[i] / 'blur',
                      lambda kind, i: f'00000{i}.png')
  _, pairs, unmatched, missing = scoring.match_results(str(mirrored), str(gopro))
  assert len(pairs) == 3 and not unmatched and not missing
  os.remove(tmp_path / 'gopro_results' / f'{sequences[2]}_000002.png')
  _, _, _, missing = scoring.match_results(str(tmp_path / 'gopro_results'), str(gopro))
  assert missing == [os.path.join(sequences[2], 'sharp', '000002.png')]


def test_dpdd_and_jax_protocols_score_a_target_layout(tmp_path):
  data = tmp_path / 'DPDD'
  copy_fixture_images(lambda kind, i: {'gt': data / 'target', 'blur': data / 'inputC',
                                       'result': tmp_path / 'results'}[kind],
                      lambda kind, i: f'{i}.png')
  _, pairs, _, _ = scoring.match_results(str(tmp_path / 'results'), str(data))
  rows = scoring.score_all(pairs, 'dpdd', workers=1)
  official = EXPECTED['images'][NAMES[0]]
  result, target = read(official['result']), read(official['gt'])
  assert rows[0]['psnr'] == pytest.approx(-10 * np.log10(np.mean((result - target) ** 2.0)))
  assert rows[0]['mae'] == pytest.approx(np.mean(np.abs(result - target)), rel=1e-6)
  assert 0 < rows[0]['ssim'] < 1 and 'input_psnr' in rows[0]
  mimo_rows = scoring.score_all(pairs, 'mimo', workers=1)
  assert mimo_rows[0]['psnr'] == pytest.approx(rows[0]['psnr'], abs=1e-3)  # Both whole-image.
  assert set(mimo_rows[0]) == {'name', 'group', 'psnr', 'ssim', 'input_psnr', 'input_ssim'}


def test_a_folder_of_no_known_layout_is_an_error_naming_the_layouts(tmp_path):
  with pytest.raises(InputError, match=r'holds none of the benchmark layouts'):
    scoring.match_results(str(tmp_path), str(tmp_path))


def test_a_papers_table_of_two_benchmarks_in_one_command(tmp_path):
  data = tmp_path / 'DPDD'
  copy_fixture_images(lambda kind, i: {'gt': data / 'target', 'blur': data / 'inputC',
                                       'result': tmp_path / 'dpdd_results'}[kind],
                      lambda kind, i: f'{i}.png')
  realblur_data = os.path.join(FIXTURE, 'data')
  command = [sys.executable, '-m', 'deblur_jax.score', f'--output={tmp_path / "table"}',
             '--method=Ours', '--workers=1',
             f'--benchmark=RealBlur-J,realblur,{os.path.join(FIXTURE, "results")},{realblur_data},'
             f'{os.path.join(realblur_data, "RealBlur_J_test_list.txt")}',
             f'--benchmark=DPDD,dpdd,{tmp_path / "dpdd_results"},{data}']
  run = subprocess.run(command, capture_output=True, text=True)
  assert run.returncode == 0, run.stderr
  means = [json.loads((tmp_path / 'table' / name / 'scores.json').read_text())['means']
           for name in ('RealBlur-J', 'DPDD')]
  assert abs(means[0]['psnr'] - EXPECTED['means']['deblur_psnr']) < PSNR_TOLERANCE
  markdown = (tmp_path / 'table' / 'table.md').read_text().splitlines()
  assert markdown[0] == '| method | RealBlur-J PSNR / SSIM | DPDD PSNR / SSIM |'
  assert markdown[2] == (f"| Ours | {means[0]['psnr']:.2f} / {means[0]['ssim']:.4f} | "
                         f"{means[1]['psnr']:.2f} / {means[1]['ssim']:.4f} |")
  assert markdown[3] == '| protocol | `realblur` (3 images) | `dpdd` (3 images) |'
  latex = (tmp_path / 'table' / 'table.tex').read_text()
  assert '\\multicolumn{2}{c}{RealBlur-J} & \\multicolumn{2}{c}{DPDD}' in latex
  assert f"Ours & {means[0]['psnr']:.2f} & {means[0]['ssim']:.4f}" in latex
  # A bad benchmark is an error before anything is written.
  bad = subprocess.run([*command[:4], '--overwrite', '--benchmark=X,matlab,a,b'],
                       capture_output=True, text=True)
  assert bad.returncode == 2 and "unknown protocol 'matlab'" in bad.stderr


def evaluate_returning_the_input(config, tmp_path):
  mesh = sharding.create_mesh(jax.devices()[:4])
  built = evaluator.build_evaluator(config, str(tmp_path / 'work'), mesh, ReturnsTheInput())
  return evaluator.run_evaluation(built, {}, num_images=0)


def test_evaluation_reads_realblurs_test_list_and_restormers_layout(tmp_path):
  """RealBlur through its own list (ground truth first); DPDD in Restormer's
  test/DPDD/{inputC,target} through the folder fields: documented in docs/protocols.md."""
  config = mimo.get_config('tiny')
  config.data.update(dir=os.path.join(FIXTURE, 'data'), max_eval_images=0,
                     eval_pairs_file=os.path.join(FIXTURE, 'data', 'RealBlur_J_test_list.txt'),
                     pairs_file_order='sharp_blur')
  config.eval.protocol = 'realblur'
  rows = evaluate_returning_the_input(config, tmp_path).rows
  assert [row['name'] for row in rows] == [
      os.path.join(scene, 'blur', f'blur_{k}.png')
      for scene, k in (('scene001', 1), ('scene001', 2), ('scene244_reflect', 3))]
  assert [row['input_psnr'] for row in rows] == pytest.approx(
      [EXPECTED['images'][name]['blur_psnr'] for name in NAMES], abs=1e-4)

  dpdd_dir = tmp_path / 'test' / 'DPDD'
  copy_fixture_images(lambda kind, i: {'gt': dpdd_dir / 'target', 'blur': dpdd_dir / 'inputC',
                                       'result': tmp_path / 'unused'}[kind],
                      lambda kind, i: f'{i}.png')
  config = mimo.get_config('tiny')
  config.data.update(dir=str(tmp_path / 'test'), eval_split='DPDD', blur_folder='inputC',
                     sharp_folder='target', max_eval_images=0)
  config.eval.protocol = 'dpdd'
  result = evaluate_returning_the_input(config, tmp_path)
  assert len(result.rows) == 3 and result.metrics[-1] == 'mae'
  assert all(row['psnr'] == pytest.approx(row['input_psnr']) for row in result.rows)


def test_rsblur_layout_matches_day_scene_names_and_splits_by_saturation(tmp_path):
  data, results_dir, lists = tmp_path / 'RSBlur', tmp_path / 'results', tmp_path / 'datalist'
  scenes = [('0001', '000022'), ('0001', '000023'), ('0002_b', '000007')]
  copy_fixture_images(
      lambda kind, i: {'gt': data / scenes[i][0] / scenes[i][1] / 'gt',
                       'blur': data / scenes[i][0] / scenes[i][1] / 'real_blur',
                       'result': results_dir}[kind],
      lambda kind, i: {'gt': 'gt_sharp.png', 'blur': 'real_blur.png',
                       'result': f'{scenes[i][0]}_{scenes[i][1]}_real_blur.png'}[kind])
  lines = [f'RSBlur/{d}/{s}/gt/gt_sharp.png RSBlur/{d}/{s}/real_blur/real_blur.png\n'
           for d, s in scenes]
  os.makedirs(lists)
  (lists / 'RSBlur_real_test.txt').write_text(''.join(lines))
  (lists / 'RSBlur_real_test_saturation.txt').write_text(lines[1])
  (lists / 'RSBlur_real_test_non_saturation.txt').write_text(lines[0] + lines[2])
  layout, pairs, unmatched, missing = scoring.match_results(
      str(results_dir), str(data), str(lists / 'RSBlur_real_test.txt'))
  assert layout == 'rsblur' and not unmatched and not missing
  assert [p.group for p in pairs] == ['non-saturated', 'saturated', 'non-saturated']
  rows = scoring.score_all(pairs, 'rsblur', workers=1)
  for pair, row in zip(pairs, rows):
    result, target = (image_files.read_image(p).rgb for p in (pair.result, pair.target))
    assert row['psnr'] == pytest.approx(realblur.score(result, target, clip=True)['psnr'])
  scores = scoring.summary(rows, 'rsblur', layout, unmatched, missing)
  assert set(scores['groups']) == {'saturated', 'non-saturated'}
  os.remove(results_dir / '0002_b_000007_real_blur.png')
  missing = scoring.match_results(str(results_dir), str(data),
                                  str(lists / 'RSBlur_real_test.txt'))[3]
  assert missing == [os.path.join('0002_b', '000007', 'gt', 'gt_sharp.png')]


@pytest.mark.parametrize('name', NAMES)
def test_dpdd_scores_are_restormers_utils(name):
  """Against Restormer's Defocus_Deblurring/utils.py, run once (tests/fixtures/dpdd)."""
  official = json.load(open(os.path.join(os.path.dirname(FIXTURE), 'dpdd',
                                         'expected.json')))['images'][name]
  record = EXPECTED['images'][name]
  for kind in ('result', 'blur'):
    scores = dpdd.score(read(record[kind]), read(record['gt']))
    assert scores['psnr'] == pytest.approx(official[kind]['psnr'], abs=1e-4)
    assert scores['ssim'] == pytest.approx(official[kind]['ssim'], abs=1e-6)
    assert scores['mae'] == pytest.approx(official[kind]['mae'], abs=1e-7)


def test_a_checkpoints_table_restores_each_benchmark_and_the_results_page_links_it(tmp_path):
  """--workdir instead of results: the model restores every benchmark's blurred inputs
  (RealBlur's through its test list), each is scored under its protocol, and the
  step's results page links the tables."""
  from helpers import write_tiny_checkpoint  # pylint: disable=g-import-not-at-top
  workdir = tmp_path / 'run'
  write_tiny_checkpoint(workdir, step=5)
  evaluation = workdir / 'eval'  # An evaluation of step 5 with its page, as --mode=eval leaves.
  os.makedirs(evaluation)
  (evaluation / 'step_5.json').write_text(json.dumps(
      {'psnr': 30.0, 'ssim': 0.9, 'input_psnr': 25.0, 'input_ssim': 0.8, 'num_images': 1}))
  (evaluation / 'step_5.csv').write_text('name,psnr,ssim,input_psnr,input_ssim\na.png,30,0.9,25,'
                                         '0.8\n')
  data = tmp_path / 'DPDD'
  copy_fixture_images(lambda kind, i: {'gt': data / 'target', 'blur': data / 'inputC',
                                       'result': tmp_path / 'unused'}[kind],
                      lambda kind, i: f'{i}.png')
  realblur_data = os.path.join(FIXTURE, 'data')
  command = [sys.executable, '-m', 'deblur_jax.score', f'--workdir={workdir}', '--workers=1',
             f'--benchmark=RealBlur-J,realblur,{realblur_data},'
             f'{os.path.join(realblur_data, "RealBlur_J_test_list.txt")}',
             f'--benchmark=DPDD,mimo,{data}']
  run = subprocess.run(command, capture_output=True, text=True)
  assert run.returncode == 0, run.stderr
  output = evaluation / 'step_5_benchmarks'
  assert sorted(os.listdir(output / 'DPDD' / 'results' / 'inputC')) == ['0.png', '1.png', '2.png']
  assert sorted(p.name for p in (output / 'RealBlur-J' / 'results').rglob('*.png')) == [
      'blur_1.png', 'blur_2.png', 'blur_3.png']
  scores = json.loads((output / 'RealBlur-J' / 'scores.json').read_text())
  assert scores['protocol'] == 'realblur' and scores['means']['count'] == 3
  markdown = (output / 'table.md').read_text().splitlines()
  assert markdown[0] == '| method | RealBlur-J PSNR / SSIM | DPDD PSNR / SSIM |'
  assert markdown[2].startswith('| MIMOUNet |')
  assert markdown[3] == '| protocol | `realblur` (3 images) | `mimo` (3 images) |'
  page = (evaluation / 'step_5.html').read_text()
  assert 'href="step_5_benchmarks/table.md"' in page
  assert 'href="step_5_benchmarks/table.tex"' in page
  # Again: everything exists, nothing is replaced without --overwrite.
  again = subprocess.run(command, capture_output=True, text=True)
  assert again.returncode == 2 and 'exists; pass --overwrite' in again.stderr
  # A RealBlur folder without its test list holds the training scenes too.
  unlisted = subprocess.run([*command[:4], f'--output={tmp_path / "x"}',
                             f'--benchmark=R,realblur,{realblur_data}'],
                            capture_output=True, text=True)
  assert unlisted.returncode == 2 and "give the benchmark's test list" in unlisted.stderr
  assert not (tmp_path / 'x').exists()
