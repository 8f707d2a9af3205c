import assert from 'node:assert/strict';

import { sizeMemory } from '../../../activities/postgres/vector-index';

const MIB = 1024 * 1024;
const GIB = 1024 * MIB;

describe('vector index build memory (pure)', () => {
  it('sizes an HNSW build from rows × (dimensions × 4 + 8 + m × 2 × 8), with a quarter of margin', () => {
    // 100,000 rows of vector(768), m = 16: 100,000 × (3,072 + 8 + 256) bytes
    const memory = sizeMemory(
      100_000,
      768,
      { m: 16 },
      { memoryShare: 0.25, instanceMemoryBytes: 16 * GIB },
      0,
      'hnsw',
    );
    assert.equal(memory.estimatedBytes, 333_600_000);
    assert.equal(memory.maintenanceWorkMemBytes, 417_000_000);
    assert.equal(memory.boundBytes, 4 * GIB);
    assert.equal(memory.willSpill, false);
    assert.equal(memory.warning, undefined);
  });

  it('bounds the build by its share of four times shared_buffers and warns that it will spill', () => {
    // 1,000,000 rows of vector(1536), m = 16, shared_buffers 1 GB: bound 0.25 × 4 GB
    const memory = sizeMemory(1_000_000, 1536, { m: 16 }, { memoryShare: 0.25 }, GIB, 'hnsw');
    assert.equal(memory.instanceBytes, 4 * GIB);
    assert.equal(memory.instanceBytesFrom, 'shared_buffers');
    assert.equal(memory.maintenanceWorkMemBytes, GIB);
    assert.equal(memory.willSpill, true);
    assert.equal(
      memory.warning,
      'the hnsw build will spill: its graph is estimated at 6111 MB (1000000 rows × 6408 bytes) but ' +
        'maintenance_work_mem is bounded by 1024 MB (25% of 4096 MB, four times shared_buffers); expect a ' +
        'much slower build, or raise DBOPS_INDEX_BUILD_MEMORY_SHARE / DBOPS_INSTANCE_MEMORY_MB',
    );
  });

  it('gives a small build the 64 MB default, and IVFFlat no neighbour lists', () => {
    const memory = sizeMemory(1_000, 3, { lists: 10 }, { memoryShare: 0.25 }, 128 * MIB, 'ivfflat');
    assert.equal(memory.estimatedBytes, 20_000);
    assert.equal(memory.maintenanceWorkMemBytes, 64 * MIB);
    assert.equal(memory.willSpill, false);
  });
});
