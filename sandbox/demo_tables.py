"""The seed's example business tables (customers, products, suppliers), so the Coze sync can be
tried — and is tested — on the tables its documentation uses. `up --sandbox` creates them in
the bridge's database with a few rows; tests create them empty or fill them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Engine,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    func,
    insert,
    select,
)

METADATA = MetaData()

CUSTOMERS = Table(
    "customers",
    METADATA,
    Column("id", Integer, primary_key=True),
    Column("uuid", String(36), nullable=False, unique=True),
    Column("customer_name", String(100), nullable=False),
    Column("customer_code", String(32), nullable=False),
    Column("phone", String(32)),
    Column("email", String(100)),
    Column("address", String(200)),
    Column("balance", Numeric(12, 2)),
    Column("is_active", Boolean, nullable=False, default=True),
    Column("updated_at", DateTime),
    comment="客户表",
)

PRODUCTS = Table(
    "products",
    METADATA,
    Column("id", Integer, primary_key=True),
    Column("uuid", String(36), nullable=False, unique=True),
    Column("product_name", String(100), nullable=False),
    Column("product_code", String(32), nullable=False),
    Column("unit_price", Numeric(12, 2)),
    Column("current_quantity", Integer),
    Column("created_at", DateTime),
    comment="产品表",
)

SUPPLIERS = Table(
    "suppliers",
    METADATA,
    Column("id", Integer, primary_key=True),
    Column("uuid", String(36), nullable=False, unique=True),
    Column("supplier_name", String(100), nullable=False),
    Column("supplier_code", String(32), nullable=False),
    Column("contact", String(100)),
    Column("is_active", Boolean, nullable=False, default=True),
    comment="供应商表",
)


def create_demo_tables(engine: Engine, rows: int = 0) -> None:
    """Create the three tables if missing; with `rows`, give each table that many rows when empty."""
    METADATA.create_all(engine)
    if not rows:
        return
    start = datetime(2024, 1, 15, 10, 0, 0)
    with engine.begin() as connection:
        if not connection.scalar(select(func.count()).select_from(CUSTOMERS)):
            connection.execute(
                insert(CUSTOMERS),
                [
                    {
                        "uuid": str(uuid.UUID(int=i + 1)),
                        "customer_name": f"客户{i + 1:04d}",
                        "customer_code": f"C{i + 1:04d}",
                        "phone": f"138{i:08d}",
                        "email": f"c{i + 1}@example.com",
                        "address": f"上海市{i + 1}号",
                        "balance": Decimal(i * 37 % 10000) / 4,
                        "is_active": i % 5 != 0,
                        "updated_at": start + timedelta(hours=i),
                    }
                    for i in range(rows)
                ],
            )
        if not connection.scalar(select(func.count()).select_from(PRODUCTS)):
            connection.execute(
                insert(PRODUCTS),
                [
                    {
                        "uuid": str(uuid.UUID(int=10**6 + i)),
                        "product_name": f"产品{i + 1:04d}",
                        "product_code": f"P{i + 1:04d}",
                        "unit_price": Decimal(i * 13 % 5000) / 4,
                        "current_quantity": i * 7 % 300,
                        "created_at": start + timedelta(days=i),
                    }
                    for i in range(rows)
                ],
            )
        if not connection.scalar(select(func.count()).select_from(SUPPLIERS)):
            connection.execute(
                insert(SUPPLIERS),
                [
                    {
                        "uuid": str(uuid.UUID(int=2 * 10**6 + i)),
                        "supplier_name": f"供应商{i + 1:03d}",
                        "supplier_code": f"S{i + 1:03d}",
                        "contact": f"联系人{i + 1}",
                        "is_active": i % 3 != 0,
                    }
                    for i in range(rows)
                ],
            )


def now_naive() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)
