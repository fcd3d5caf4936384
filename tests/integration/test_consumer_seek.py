"""The worker's one-request seek to committed offsets, against aiokafka's own, on Kafka."""

from __future__ import annotations

import asyncio
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from streams.consumer import seek_to_committed_at_once
from tests.integration.harness import new_topic

PARTITIONS = 4
RECORDS_PER_PARTITION = 5
# Partition -> committed offset; partition 3 is never committed.
COMMITS = {0: 3, 1: 0, 2: 5}


async def _positions_after(bootstrap: str, topic: str, group: str, ours: bool) -> tuple:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        # Positions somewhere else first, so a seek that is not made shows.
        for tp in tps:
            consumer.seek(tp, 4)
        if ours:
            committed = await seek_to_committed_at_once(consumer)
        else:
            committed = await consumer.seek_to_committed()
        positions = {tp.partition: await consumer.position(tp) for tp in tps}
        return {tp.partition: off for tp, off in committed.items()}, positions
    finally:
        await consumer.stop()


def test_one_request_seek_gives_what_aiokafka_gives_partition_by_partition(
    kafka_bootstrap: str,
) -> None:
    topic = new_topic(kafka_bootstrap, "test-seek", PARTITIONS)
    group = f"wf-test-seek-{uuid.uuid4().hex[:10]}"

    async def prepare() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
        await producer.start()
        try:
            for p in range(PARTITIONS):
                for i in range(RECORDS_PER_PARTITION):
                    await producer.send_and_wait(topic, b"%d" % i, partition=p)
        finally:
            await producer.stop()
        committer = AIOKafkaConsumer(
            bootstrap_servers=kafka_bootstrap, group_id=group, enable_auto_commit=False
        )
        await committer.start()
        try:
            committer.assign([TopicPartition(topic, p) for p in range(PARTITIONS)])
            await committer.commit(
                {TopicPartition(topic, p): OffsetAndMetadata(o, "") for p, o in COMMITS.items()}
            )
        finally:
            await committer.stop()

    asyncio.run(prepare())
    ours = asyncio.run(_positions_after(kafka_bootstrap, topic, group, ours=True))
    theirs = asyncio.run(_positions_after(kafka_bootstrap, topic, group, ours=False))

    # The truth, written down: committed offsets as committed (none for partition 3);
    # partitions committed above 0 are moved there, the others stay at 4.
    assert ours[0] == {0: 3, 1: 0, 2: 5, 3: None}
    assert ours[1] == {0: 3, 1: 4, 2: 5, 3: 4}
    assert ours == theirs


def test_offset_zero_of_a_partition_retention_cut_reads_from_its_first_kept_record(
    kafka_bootstrap: str,
) -> None:
    # The worker seeks a never-committed partition to 0 without asking the broker
    # (BatchConsumer.perform_seek); where offset 0 is deleted, aiokafka must move to the
    # first record kept, as seek_to_beginning would.
    from kafka.admin import KafkaAdminClient
    from kafka.structs import TopicPartition as KafkaTopicPartition

    topic = new_topic(kafka_bootstrap, "test-seek-zero", 1)
    tp = TopicPartition(topic, 0)

    async def produce() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
        await producer.start()
        try:
            for i in range(RECORDS_PER_PARTITION):
                await producer.send_and_wait(topic, b"%d" % i, partition=0)
        finally:
            await producer.stop()

    async def first_offset(beginning: bool) -> int:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=kafka_bootstrap, enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        try:
            consumer.assign([tp])
            if beginning:
                await consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, 0)
            record = await asyncio.wait_for(consumer.getone(), 20)
            return int(record.offset)
        finally:
            await consumer.stop()

    asyncio.run(produce())
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        admin.delete_records({KafkaTopicPartition(topic, 0): 3})
    finally:
        admin.close()
    assert asyncio.run(first_offset(beginning=False)) == 3
    assert asyncio.run(first_offset(beginning=True)) == 3
