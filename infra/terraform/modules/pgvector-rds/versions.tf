terraform {
  required_version = ">= 1.5.0"

  required_providers {
    aws = {
      source = "hashicorp/aws"
      # 5.x: manage_master_user_password, aws_vpc_security_group_ingress_rule and
      # aws_db_instance_automated_backups_replication are all available from 5.0 on.
      version = "~> 5.70"
      # `aws` is the primary region; `aws.backup_region` receives the replicated automated backups.
      configuration_aliases = [aws.backup_region]
    }
  }
}
