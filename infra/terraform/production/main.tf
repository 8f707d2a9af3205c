# Production: the runbook's mcp-demo-prod in us-east-1, with automated backups replicated to
# us-west-2. Network ids and bucket names come from terraform.tfvars (see the example file).

terraform {
  required_version = ">= 1.5.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.70"
    }
  }

  # State lives in S3 (encrypted, versioned, locked). It holds no database password: RDS keeps the
  # master password in Secrets Manager. Give the bucket and key at init:
  #   terraform init -backend-config=bucket=<state bucket> -backend-config=key=dbops/production.tfstate \
  #     -backend-config=region=us-east-1 -backend-config=encrypt=true -backend-config=use_lockfile=true
  backend "s3" {}
}

provider "aws" {
  region = var.region
  default_tags {
    tags = local.tags
  }
}

provider "aws" {
  alias  = "backup_region"
  region = var.backup_region
  default_tags {
    tags = local.tags
  }
}

locals {
  tags = {
    Environment = "production"
    Application = "mcp-demo"
    ManagedBy   = "terraform"
  }
}

module "database" {
  source = "../modules/pgvector-rds"
  providers = {
    aws               = aws
    aws.backup_region = aws.backup_region
  }

  identifier                 = "mcp-demo-prod"
  operations_prefix          = "mcp-demo-"
  instance_class             = var.instance_class
  database_name              = "mcp_db"
  master_username            = "mcp_admin"
  iam_database_user          = "dbops"
  vpc_id                     = var.vpc_id
  subnet_ids                 = var.subnet_ids
  allowed_security_group_ids = var.allowed_security_group_ids
  replica_availability_zone  = var.replica_availability_zone
  export_bucket_name         = var.export_bucket_name
  access_logs_bucket         = var.access_logs_bucket
  worker_role_names          = var.worker_role_names
  backup_region_network      = var.backup_region_network
  tags                       = local.tags
}
